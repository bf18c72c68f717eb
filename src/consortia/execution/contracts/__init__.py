"""Built-in contracts.

THE SHARED SPECIFICATION of the built-in contracts (names, state layout, who may call what)
is docs/contracts-spec.md: read it before writing or changing a contract here; adding one is
described in docs/contracts.md ("Adding a contract").

Owns the contracts' code. Each contract owns its namespace and exports the only accessors of
its state (keys and readers) that other code may use: system.py (`sys`), identity_state.py
(`identity`), governance_state.py (`governance`), asset.py, oracle_state.py (`oracle`),
receivable_state.py (`receivable`), vault_state.py (`vault`), datashare_state.py
(`datashare`), regulator_state.py (the regulator's escrow key; regulator.py keeps the rest of
its state to itself). Must never import
anything outside the allow-list checked by tests/unit/test_contract_imports.py (the contract
API in consortia.execution.contract, the genesis and consensus types, typing, dataclasses),
so a contract reaches state only through its Context.
"""
