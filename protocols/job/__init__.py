"""The job protocol: jobs topic, offer/assign streams, per-job round topics.

Jobs are announced on the jobs topic; offer/assign go over request/response
streams; rounds and update announcements go on each job's own topic.

Protocol id for the request/response steps: ``PROTOCOL_ID``.
"""

PROTOCOL_ID = "/distro-train/job/1.0.0"
JOBS_TOPIC = "distro-train/jobs/1"


def job_topic(job_id: str) -> str:
    """The gossipsub topic of one job's rounds and update announcements."""
    return f"distro-train/job/1/{job_id}"
