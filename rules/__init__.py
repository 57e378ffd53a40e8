"""initlint's built-in rules: one module per rule, discovered by initlint.engine.registry()."""
