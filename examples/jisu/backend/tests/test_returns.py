"""Unit tests of the fixture backend's pure code."""

import pytest

from app.main import fund_return


def test_fund_return() -> None:
    assert fund_return(100.0, 110.0) == pytest.approx(0.10)


def test_fund_return_rejects_zero_start() -> None:
    with pytest.raises(ValueError):
        fund_return(0.0, 1.0)
