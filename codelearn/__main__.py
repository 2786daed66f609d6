from codelearn.cli import run

run()
