"""The ``drift`` section of ``ct.yaml``: the statistical test and threshold of each column, and feature weights."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: tests the fast check computes (Evidently 0.7's implementations), by the column types they accept
NUMERICAL_TESTS = ("ks", "wasserstein", "psi", "jensenshannon")
CATEGORICAL_TESTS = ("chisquare", "z", "psi", "jensenshannon")
STATTESTS = ("auto", "ks", "wasserstein", "chisquare", "z", "psi", "jensenshannon")
#: tests whose score is a p-value (drift when below the threshold); the others are distances (drift at or above)
PVALUE_TESTS = frozenset({"ks", "chisquare", "z"})

StatTestName = Literal["auto", "ks", "wasserstein", "chisquare", "z", "psi", "jensenshannon"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ColumnTest(_Strict):
    """One statistical test: its name and threshold (``None``: the test's default)."""

    stattest: StatTestName = Field("auto", description="auto: Evidently's choice by data size (an effect size "
                                                        "above 1000 reference values, a p-value test below)")
    threshold: float | None = Field(None, gt=0, description="p-value tests (ks, chisquare, z) drift below it, "
                                                            "distances (wasserstein, psi, jensenshannon) at or "
                                                            "above it; None: the test's default")


class NumericalTest(ColumnTest):
    """The test of numerical columns."""

    @model_validator(mode="after")
    def _numerical(self) -> NumericalTest:
        if self.stattest not in ("auto", *NUMERICAL_TESTS):
            raise ValueError(f"stattest {self.stattest!r} is for categorical columns; numerical columns take "
                             f"one of {['auto', *NUMERICAL_TESTS]}")
        return self


class CategoricalTest(ColumnTest):
    """The test of categorical columns."""

    @model_validator(mode="after")
    def _categorical(self) -> CategoricalTest:
        if self.stattest not in ("auto", *CATEGORICAL_TESTS):
            raise ValueError(f"stattest {self.stattest!r} is for numerical columns; categorical columns take "
                             f"one of {['auto', *CATEGORICAL_TESTS]}")
        return self


class DriftConfig(_Strict):
    """How the drift stages judge each column and how much each column counts."""

    numerical: NumericalTest = Field(default_factory=NumericalTest)
    categorical: CategoricalTest = Field(default_factory=CategoricalTest)
    columns: dict[str, ColumnTest] = Field(default_factory=dict, description="per-column test and threshold")
    weighting: Literal["importance", "equal"] = Field(
        "importance", description="importance: a column counts by the champion's feature importance (how much "
                                  "its scores move when the column is shuffled); equal: every column counts the same")
    importance_rows: int = Field(1000, ge=100, le=1_000_000, description="reference rows used to measure importance")

    def tests_for(self, columns: dict[str, str]) -> dict[str, tuple[str, float | None]]:
        """``{column: (stattest, threshold)}`` for columns typed ``"num"`` or ``"cat"``."""
        out: dict[str, tuple[str, float | None]] = {}
        for name, kind in columns.items():
            test: ColumnTest = self.columns.get(name) or (self.numerical if kind == "num" else self.categorical)
            out[name] = (test.stattest, test.threshold)
        return out
