"""Registry panel: model versions, the champion, and promote / rollback behind a confirmation step."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..errors import CTError, PromotionRefused
from ._data import VersionRow, registry_of
from ._render import badge, message, table

if TYPE_CHECKING:
    from ..project import Project
    from ..registry import AliasMove, Registry


def _actor() -> str:
    try:
        return f"dashboard:{getpass.getuser()}"
    except (KeyError, OSError):
        return "dashboard"


class RegistryPanel(widgets.VBox):
    """Nothing moves an alias until the person confirms; a move the model gate did not bless needs 'force'.

    Promoting a gate-rejected version, or rolling back to a version that was never champion nor
    blessed, is refused unless 'force' is ticked; the question then says the move is forced, and the
    audit log records it as forced.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.primary = project.config.model.primary_metric
        self._registry: Registry | None = None
        self.rows: list[VersionRow] = []
        self.champion: int | None = None
        self.pending: tuple[str, int | None] | None = None
        self.last_move: AliasMove | None = None
        self.versions = widgets.HTML()
        self.version = widgets.Dropdown(description="version", options=[])
        self.reason = widgets.Text(description="reason", placeholder="why (goes to the audit log)")
        self.rollback_to = widgets.Dropdown(description="roll back to", options=[("previous champion", None)])
        self.force = widgets.Checkbox(description="force past the model gate", value=False, indent=False)
        self.promote_button = widgets.Button(description="Promote to champion", button_style="warning")
        self.rollback_button = widgets.Button(description="Roll back champion", button_style="warning")
        self.question = widgets.HTML()
        self.confirm_button = widgets.Button(description="Confirm", button_style="danger")
        self.cancel_button = widgets.Button(description="Cancel")
        self.confirm_box = widgets.HBox([self.question, self.confirm_button, self.cancel_button],
                                        layout=widgets.Layout(display="none"))
        self.message = widgets.HTML()
        self.audit = widgets.HTML()
        self.promote_button.on_click(lambda _: self.request_promote())
        self.rollback_button.on_click(lambda _: self.request_rollback())
        self.confirm_button.on_click(lambda _: self.confirm())
        self.cancel_button.on_click(lambda _: self.cancel())
        super().__init__([
            self.versions,
            widgets.HBox([self.version, self.reason, self.force]),
            widgets.HBox([self.promote_button, self.rollback_to, self.rollback_button]),
            self.confirm_box, self.message,
            widgets.HTML("<b>alias moves</b> (newest first)"), self.audit,
        ])
        self.refresh()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = registry_of(self.project)
        return self._registry

    def refresh(self) -> None:
        infos = self.registry.versions()
        self.rows = [VersionRow.of(info, self.primary) for info in infos]
        self.champion = next((r.version for r in self.rows if "champion" in r.aliases.split(",")), None)
        current = self.version.value
        self.version.options = [(f"v{r.version}  {r.aliases or r.gate}", r.version) for r in self.rows]
        numbers = [r.version for r in self.rows]
        self.version.value = current if current in numbers else (numbers[0] if numbers else None)
        target = self.rollback_to.value
        self.rollback_to.options = [("previous champion", None)] + [
            (f"v{n}", n) for n in numbers if n != self.champion
        ]
        self.rollback_to.value = target if target in numbers and target != self.champion else None
        self.versions.value = table(
            ("version", "aliases", self.primary, "gate", "train run", "registered"),
            [(r.version, r.aliases or "-", r.metric, badge({"passed": "promoted"}.get(r.gate, r.gate)),
              r.run_id, r.created_at[:19]) for r in self.rows],
            raw_columns=(3,),
        )
        moves = list(reversed(self.registry.audit_log("champion")))[:20]
        self.audit.value = table(
            ("when", "action", "from", "to", "who", "why"),
            [(m.at[:19], m.action + (" (forced)" if m.forced else ""), m.from_version, m.to_version, m.actor,
              m.reason) for m in moves],
        )

    # -- two-step actions ------------------------------------------------------------------------
    def _ask(self, action: str, version: int | None, question: str) -> None:
        self.pending = (action, version)
        self.question.value = f"<b>{question}</b>"
        self.confirm_box.layout.display = "flex"
        self.message.value = ""

    def request_promote(self, version: int | None = None) -> None:
        """Ask to confirm promoting ``version`` (default: the one picked)."""
        target = version if version is not None else self.version.value
        if target is None:
            message(self.message, "no version to promote", error=True)
            return
        self._ask("promote", int(target), f"Make v{target} the champion (now v{self.champion or '-'})?")

    def request_rollback(self, to_version: int | None = None) -> None:
        """Ask to confirm moving the champion back (to ``to_version``, the one picked, or the previous)."""
        target = to_version if to_version is not None else self.rollback_to.value
        if target is None:
            self._ask("rollback", None,
                      f"Move the champion from v{self.champion or '-'} back to the previous champion?")
            return
        question = f"Roll the champion back from v{self.champion or '-'} to v{target}?"
        try:
            refusal = self.registry.rollback_refusal(int(target))
        except CTError as exc:
            message(self.message, str(exc), error=True)
            return
        if refusal is not None:
            question += (f" Forced: {refusal}; this is recorded as forced." if self.force.value
                         else f" It will be refused: {refusal} (tick 'force' to override).")
        self._ask("rollback", int(target), question)

    def cancel(self) -> None:
        self.pending = None
        self.confirm_box.layout.display = "none"
        message(self.message, "nothing changed")

    def confirm(self) -> AliasMove | None:
        """Carry out the pending action through the registry; errors are shown, not raised."""
        if self.pending is None:
            return None
        action, version = self.pending
        self.pending = None
        self.confirm_box.layout.display = "none"
        reason = self.reason.value.strip() or f"{action} from the dashboard"
        move: AliasMove | None = None
        try:
            if action == "promote":
                assert version is not None
                move = self.registry.promote(version, actor=_actor(), reason=reason, force=self.force.value)
            else:
                move = self.registry.rollback(actor=_actor(), reason=reason, to_version=version,
                                              force=self.force.value)
        except PromotionRefused as exc:
            message(self.message, str(exc.with_override("tick 'force'")), error=True)
        except CTError as exc:
            message(self.message, str(exc), error=True)
        if move is not None:
            self.last_move = move
            forced = " (forced)" if move.forced else ""
            message(self.message, f"champion: v{move.from_version or '-'} -> v{move.to_version}{forced}")
        self.refresh()
        return move
