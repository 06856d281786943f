"""Stage 1, YAML text to primitive nodes: read with positions, validate, resolve imports,
inline function calls.  Nothing here runs math."""
