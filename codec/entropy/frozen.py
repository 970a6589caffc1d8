"""Integer probability tables frozen next to a model's weights, shared by image and feature models."""
from __future__ import annotations

import torch

from codec.entropy.tables import TableSet


class FrozenTables:
    """Mixin: `update()` builds `tables` (name -> TableSet) and `table_tensors`; they are saved with the weights."""

    table_names: tuple[str, ...] = ()
    table_tensor_names: tuple[str, ...] | None = None  # the other tensors it keeps (None: all the rest it is given)

    def init_tables(self) -> None:
        self.tables: dict[str, TableSet] = {}
        self.table_tensors: dict[str, torch.Tensor] = {}

    def table_state(self) -> dict[str, torch.Tensor]:
        """Integer tables (and medians) built by `update()`, to save next to the weights."""
        if not self.tables:
            raise RuntimeError("call update() before saving tables")
        state = dict(self.table_tensors)
        for name, table in self.tables.items():
            state.update(table.to_tensors(name))
        return state

    def load_table_state(self, state: dict[str, torch.Tensor]) -> None:
        self.tables = {name: TableSet.from_tensors(state, name) for name in self.table_names}
        known = {f"{name}_{part}" for name in self.table_names for part in ("counts", "lengths", "offsets")}
        wanted = self.table_tensor_names
        self.table_tensors = {key: value for key, value in state.items()
                              if key not in known and (wanted is None or key in wanted)}
        self._after_tables_loaded()

    def _after_tables_loaded(self) -> None:
        """Hook for models that derive inference-only state once tables are in place."""

    def check_ready(self) -> None:
        if not self.tables:
            raise RuntimeError("model tables are not built: call update() or load them with the weights")

