"""A short `make chaos` run (bench/chaos.py): 500 jobs on a devstack of real processes while the requester,
a compute node and the verifier are each killed with SIGKILL once and started again. Every acknowledged job
completes (a restart fails none), none is made twice by a retried submission or published twice by one node,
and no event is recorded twice or missing."""

from bench import chaos


async def test_500_jobs_through_three_kills_all_complete_once(tmp_path):
    report = await chaos.chaos(
        jobs=500, in_flight=32, kills=1, seed=20261207, deadline=600.0, data_dir=str(tmp_path)
    )
    chaos.print_report(report, 500)
    assert [kill.node for kill in report.kills] != [] and len(report.kills) == 3
    assert report.acknowledged == 500
    assert report.lost == []
    assert report.duplicated_publications == 0
    assert report.events_duplicated == 0 and report.events_missing == 0
    assert report.errors == {} and report.completed == 500
    assert report.unacknowledged == 0
    assert not report.failed
