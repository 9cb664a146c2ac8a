"""The ground floor every room of ``grid`` stands on: canonical hashing and versions
(``fingerprint``), where experiments and results live (``locations``), the user error
(``errors``), whole-or-nothing local files (``files``) and the resume tests' fault hooks
(``faults``). Imports nothing else of grid, and neither torch, pandas nor pyarrow at import."""
