; Definitions for the codelearn chunker (Python).
(class_definition name: (identifier) @name) @definition.class
(function_definition name: (identifier) @name) @definition.function
