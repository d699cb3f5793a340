"""One module per kernel route, all keeping the contract in ``zcopy._transfer``."""
