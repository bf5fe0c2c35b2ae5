"""Fixtures for the review-UI tests (defined in `review_deployment`, shared with the test modules)."""

from tests.ui.review_deployment import browser, deployment

__all__ = ["browser", "deployment"]
