"""PostgreSQL with the in-process broker (``CARTSNITCH_REDIS_URL`` unset): the history and the idempotency keys in
PostgreSQL's tables rather than SQLite's. The socket and pipeline suites run here once more on that pairing (the
suite's ``stack`` pairs SQLite with the in-process broker and PostgreSQL with Redis)."""

from __future__ import annotations

import pytest

from tests.hub.test_pipeline import (
    test_a_met_target_price_fires_once,
    test_a_price_update_that_fails_midway_is_taken_up_where_it_stopped,
    test_a_target_fired_by_a_process_that_died_before_announcing_it_is_announced_once,
    test_an_alert_to_buyers_whose_answer_was_lost_is_recorded_once,
    test_coupon_updates_reach_the_users_they_concern,
    test_product_alerts_without_a_user_go_to_buyers_by_their_settings,
    test_trend_room_snapshot_matches_rest_and_price_updates_arrive_with_a_fresh_one,
    world,
)
from tests.hub.test_socket import (
    clients,
    test_connect_and_receive_an_event,
    test_every_connection_of_a_user_gets_each_event_once,
    test_logout_ends_live_connections,
    test_resume_replays_in_order_exactly_once_then_live,
    test_stale_last_event_id_gets_resync,
    test_trimmed_history_gets_resync,
)

__all__ = [
    "clients",
    "test_a_met_target_price_fires_once",
    "test_a_price_update_that_fails_midway_is_taken_up_where_it_stopped",
    "test_a_target_fired_by_a_process_that_died_before_announcing_it_is_announced_once",
    "test_an_alert_to_buyers_whose_answer_was_lost_is_recorded_once",
    "test_connect_and_receive_an_event",
    "test_coupon_updates_reach_the_users_they_concern",
    "test_every_connection_of_a_user_gets_each_event_once",
    "test_logout_ends_live_connections",
    "test_product_alerts_without_a_user_go_to_buyers_by_their_settings",
    "test_resume_replays_in_order_exactly_once_then_live",
    "test_stale_last_event_id_gets_resync",
    "test_trend_room_snapshot_matches_rest_and_price_updates_arrive_with_a_fresh_one",
    "test_trimmed_history_gets_resync",
    "world",
]


@pytest.fixture
def stack(pg_url: str) -> tuple[str, str | None]:
    return pg_url, None
