"""Repository functions: small queries grouped by table. Each takes ``session`` and never commits;
the caller owns the transaction (``lawscreen.database.transaction``)."""
