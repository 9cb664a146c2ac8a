"""The ground floor every room of ``grid`` stands on: canonical hashing and versions
(``fingerprint``), where experiments and results live (``locations``), the user error and the
damaged record (``errors``), JSON read back with a size and depth bound (``bounded_json``),
whole-or-nothing local files (``files``) and the resume tests' fault hooks (``faults``).
Imports nothing else of grid, and neither torch, pandas nor pyarrow at import."""
