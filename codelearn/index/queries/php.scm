; Definitions for the codelearn chunker (PHP).
(class_declaration name: (name) @name) @definition.class
(interface_declaration name: (name) @name) @definition.class
(trait_declaration name: (name) @name) @definition.class
(enum_declaration name: (name) @name) @definition.class
(namespace_definition name: (namespace_name) @name body: (compound_statement)) @definition.module
(function_definition name: (name) @name) @definition.function
(method_declaration name: (name) @name) @definition.function
