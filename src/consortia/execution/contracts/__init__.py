"""Built-in contracts.

THE SHARED SPECIFICATION of the built-in contracts (names, state layout, who may call what)
is docs/contracts-spec.md: read it before writing or changing a contract here.

Each module imports only from the allow-list checked by tests/unit/test_contract_imports.py:
the contract API and the standard library's pure parts.
"""
