; Definitions for the codelearn chunker (Bash).
(function_definition name: (word) @name) @definition.function
