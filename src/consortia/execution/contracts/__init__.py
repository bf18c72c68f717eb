"""Built-in contracts. Each module imports only from the allow-list checked by
tests/unit/test_contract_imports.py: the contract API, the standard library's pure parts."""
