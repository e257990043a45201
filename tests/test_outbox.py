"""The outbox mechanism on the email kind: claims, leases, abandoned claims, lost jobs, due retries."""

from datetime import timedelta

import pytest
from rq.job import Job

from portal.extensions import db
from portal.models import Delivery, DeliveryAttempt, Invoice
from portal.outbox import service as outbox
from portal.runtime.queue import get_queue, get_redis
from portal.sending import service
from portal.types import utcnow
from tests.factories import make_invoice
from tests.helpers import add_mail_settings

DEAD = f"{outbox._machine()}:4194000:1"  # a pid above any this machine hands out


def delivery_jobs() -> list[str]:
    """The email jobs on the queue (each send also queues its tax message's job)."""

    return [job for job in get_queue().job_ids if job.startswith("delivery-")]


@pytest.fixture
def outbox_app(app, redis_url):
    app.config.update(REDIS_URL=redis_url, RQ_QUEUE="test-outbox", QUEUED_STALE_AFTER=0,
                      SEND_RETRY_INTERVALS="30,60")  # fmt: skip
    with app.app_context():
        get_redis().flushdb()
        add_mail_settings(2525)
    return app


def queued_delivery() -> int:
    invoice_id = make_invoice().id
    recipients = service.parse_recipients("", "an@example.com")
    return service.queue_delivery(invoice_id, None, recipients).delivery.id


def hold(delivery_id: int, claimed_by: str = DEAD, data_sent: bool = False, lease: int = 300):
    """Make the delivery look claimed by some worker."""
    held = outbox.claim(service.DELIVERIES, delivery_id)
    delivery = db.session.get(Delivery, delivery_id)
    delivery.claimed_by = claimed_by
    delivery.lease_until = utcnow() + timedelta(seconds=lease)
    if data_sent:
        delivery.data_sent_at = utcnow()
    db.session.commit()
    return held


def test_only_one_claim_wins(outbox_app):
    with outbox_app.app_context():
        delivery_id = queued_delivery()
        first = outbox.claim(service.DELIVERIES, delivery_id)
        assert first is not None and first.attempt == 1
        assert outbox.claim(service.DELIVERIES, delivery_id) is None
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "sending" and delivery.claimed_by == outbox.worker_identity()
        assert db.session.get(Invoice, delivery.invoice_id).send_status == "sending"


def test_a_claim_of_a_dead_worker_before_the_data_is_sent_again_at_once(outbox_app):
    with outbox_app.app_context():
        delivery_id = queued_delivery()
        get_redis().flushdb()
        hold(delivery_id)
        counts = outbox.reconcile()["delivery"]
        assert counts["abandoned"] == 1 and counts["due"] == 1  # resolved and queued again
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "queued" and delivery.error_kind == "worker_stopped"
        assert delivery_jobs() == [f"delivery-{delivery_id}"]
        (attempt,) = db.session.scalars(db.select(DeliveryAttempt)).all()
        assert (attempt.outcome, attempt.data_sent) == ("retrying", False)


def test_a_claim_of_a_dead_worker_after_the_data_is_unknown(outbox_app):
    with outbox_app.app_context():
        delivery_id = queued_delivery()
        hold(delivery_id, data_sent=True)
        assert outbox.reconcile()["delivery"]["abandoned"] == 1
        delivery = db.session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.error_kind) == ("unknown", "worker_stopped")
        assert db.session.get(Invoice, delivery.invoice_id).send_status == "unknown"


def test_a_live_worker_keeps_its_claim_until_its_lease_runs_out(outbox_app):
    with outbox_app.app_context():
        delivery_id = queued_delivery()
        hold(delivery_id, claimed_by=outbox.worker_identity())
        assert outbox.reconcile()["delivery"]["abandoned"] == 0
        # A worker on another machine is trusted until its lease runs out.
        hold_again = db.session.get(Delivery, delivery_id)
        hold_again.claimed_by = "elsewhere:12:34"
        db.session.commit()
        assert outbox.reconcile()["delivery"]["abandoned"] == 0
        hold_again = db.session.get(Delivery, delivery_id)
        hold_again.lease_until = utcnow() - timedelta(seconds=1)
        db.session.commit()
        assert outbox.reconcile()["delivery"]["abandoned"] == 1


def test_the_outcome_of_a_lost_claim_changes_nothing(outbox_app):
    with outbox_app.app_context():
        delivery_id = queued_delivery()
        held = hold(delivery_id)
        outbox.reconcile()  # the reconciler gave up on the worker: queued again
        assert held.mark_data_sent(message_id="<late@x>") is False
        outbox.finish(held, outbox.Outcome.sent(250, "OK"))
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery.status == "queued" and delivery.message_id == ""


def test_jobs_redis_lost_are_enqueued_again_once(outbox_app):
    with outbox_app.app_context():
        delivery_id = queued_delivery()
        get_redis().flushdb()  # Redis lost the job
        assert delivery_jobs() == []
        assert outbox.reconcile()["delivery"]["requeued"] == 1
        assert delivery_jobs() == [f"delivery-{delivery_id}"]
        # A job that is still pending is not enqueued twice.
        assert outbox.reconcile()["delivery"]["requeued"] == 0
        assert delivery_jobs() == [f"delivery-{delivery_id}"]


def test_temporary_failures_wait_their_interval_then_fail(outbox_app):
    with outbox_app.app_context():
        delivery_id = queued_delivery()
        for expected_wait in (30, 60):
            held = outbox.claim(service.DELIVERIES, delivery_id)
            outbox.finish(held, outbox.Outcome.temporary("unreachable", None, "refused"))
            delivery = db.session.get(Delivery, delivery_id)
            assert delivery.status == "retrying"
            assert (delivery.next_attempt_at - delivery.claimed_at).total_seconds() >= expected_wait
            assert outbox.reconcile()["delivery"]["due"] == 0
            delivery.next_attempt_at = utcnow() - timedelta(seconds=1)
            db.session.commit()
            assert outbox.reconcile()["delivery"]["due"] == 1
        held = outbox.claim(service.DELIVERIES, delivery_id)
        outbox.finish(held, outbox.Outcome.temporary("unreachable", None, "refused"))
        delivery = db.session.get(Delivery, delivery_id)
        assert (delivery.status, delivery.attempts) == ("failed", 3)
        assert delivery.finished_at is not None


def test_an_item_is_claimed_only_when_queued(outbox_app):
    with outbox_app.app_context():
        delivery_id = queued_delivery()
        held = outbox.claim(service.DELIVERIES, delivery_id)
        outbox.finish(held, outbox.Outcome.temporary("unreachable"))
        assert outbox.claim(service.DELIVERIES, delivery_id) is None  # retrying: not yet
        assert outbox.run("delivery", delivery_id) == "skipped"


def test_only_a_process_of_this_machine_can_be_told_dead():
    assert outbox.claimer_alive(outbox.worker_identity())
    assert not outbox.claimer_alive(DEAD)
    me = outbox.worker_identity()
    machine, pid, started = me.rsplit(":", 2)
    assert not outbox.claimer_alive(f"{machine}:{pid}:{int(started) + 1}")  # a reused pid
    # Another host or container, or a process whose start time could not be read: the lease.
    assert outbox.claimer_alive("elsewhere/4026531836:4194000:1")
    assert outbox.claimer_alive(f"{machine}:4194000:?")


def test_many_items_go_ten_to_a_job_and_a_lost_chunk_is_enqueued_again(outbox_app):
    with outbox_app.app_context():
        ids = [queued_delivery() for _ in range(12)]
        get_redis().flushdb()  # the single jobs of queue_delivery are gone
        assert outbox.enqueue(service.DELIVERIES, ids)
        jobs = [Job.fetch(j, connection=get_redis()) for j in delivery_jobs()]
        assert sorted(job.args[1] for job in jobs) == [ids[:10], ids[10:]]
        assert {job.func_name for job in jobs} == {outbox.RUN_MANY}
        assert outbox.reconcile()["delivery"]["requeued"] == 0  # each item's chunk is pending
        # Redis loses the second chunk: only its two items are enqueued again.
        (second,) = [job for job in jobs if job.args[1] == ids[10:]]
        get_redis().delete(second.key)
        assert outbox.reconcile()["delivery"]["requeued"] == 2
        assert outbox.reconcile()["delivery"]["requeued"] == 0


def test_a_chunk_runs_each_item_once(outbox_app, smtp_server):
    with outbox_app.app_context():
        service.mail_settings().port = smtp_server.port
        db.session.commit()
        ids = [queued_delivery() for _ in range(3)]
        held = outbox.claim(service.DELIVERIES, ids[1])  # another worker has the second
        assert outbox.run_many("delivery", ids) == ["sent", "skipped", "sent"]
        outbox.finish(held, outbox.Outcome.sent(250, "OK"))
        assert len(smtp_server.messages) == 2
        statuses = db.session.scalars(db.select(Delivery.status).where(Delivery.id.in_(ids)))
        assert list(statuses) == ["sent"] * 3
