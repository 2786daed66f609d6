; Definitions for the codelearn chunker (C++). `A::b` names become `A.b`.
(function_definition
  declarator: [(function_declarator declarator: (_) @name)
               (pointer_declarator declarator: (function_declarator declarator: (_) @name))
               (reference_declarator (function_declarator declarator: (_) @name))]) @definition.function
(class_specifier name: (_) @name body: (field_declaration_list)) @definition.class
(struct_specifier name: (_) @name body: (field_declaration_list)) @definition.class
(union_specifier name: (_) @name body: (field_declaration_list)) @definition.class
(enum_specifier name: (_) @name body: (enumerator_list)) @definition.class
(type_definition
  type: [(struct_specifier body: (field_declaration_list))
         (class_specifier body: (field_declaration_list))
         (enum_specifier body: (enumerator_list))]
  declarator: (type_identifier) @name) @definition.class
(namespace_definition name: (_) @name body: (declaration_list)) @definition.module
