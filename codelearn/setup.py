"""`codelearn init`: set a repo up in one step."""

from __future__ import annotations

from codelearn.config import REPO_CONFIG_NAME, describe_settings
from codelearn.project import Project


def config_template() -> str:
    """A repo config file listing every setting, commented out, with its default."""
    lines = ["# codelearn settings for this repo. Uncomment to change a default.",
             "# Precedence: command-line flag > CODELEARN_* env var > this file > user config.",
             "[codelearn]"]
    for name, default, description in describe_settings():
        lines += [f"# {description}", f"# {name} = {default}", ""]
    return "\n".join(lines)


def init_repo(project: Project, *, hooks: bool = True) -> list[str]:
    """Write the repo config (if absent), create the state folder, install hooks."""
    done: list[str] = []
    config = project.root / REPO_CONFIG_NAME
    if config.exists():
        done.append(f"kept existing {config}")
    else:
        config.write_text(config_template())
        done.append(f"wrote {config}")
    done.append(f"state folder {project.ensure_state()} (kept out of git)")
    if hooks:
        if (project.root / ".git").exists():
            from codelearn.hooks import install_hooks

            states = install_hooks(project.root)
            done.append("git hooks: " + ", ".join(f"{s.name} ({s.state})" for s in states))
        else:
            done.append("not a git repo: no hooks installed (use `codelearn watch`)")
    done.append("next: run `codelearn index`")
    return done
