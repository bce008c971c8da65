"""`kefu tap TOPIC`: stream a topic as JSON lines or CSV."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import getpass
import json
import logging
import sys
import time
from pathlib import Path

import click

from kefu import tap as taplib
from services.runtime.settings import SettingsError, load_settings

log = logging.getLogger("kefu.tap")


@click.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="Read the whole topic, not only new records.")
@click.option("--since", help="Start at this time (ISO 8601, e.g. 2026-11-29T08:00:00Z).")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    help="field=value on envelope fields, e.g. nlu.intent=track_order; repeatable.",
)
@click.option(
    "--fields",
    help="Comma-separated fields to output (dotted paths), e.g. conversation_id,nlu.intent.",
)
@click.option(
    "--unmask", is_flag=True, help="Show customer text unmasked. Logged with your user name."
)
@click.option(
    "--max",
    "max_records",
    type=int,
    default=0,
    help="Stop after this many output rows (0: no limit).",
)
@click.option(
    "--idle-timeout",
    type=float,
    default=0.0,
    help="Stop when no record arrives for this many seconds (default: with --from-beginning/--since, stop at the end of the topic; live: never).",
)
def tap(
    topic: str,
    from_beginning: bool,
    since: str | None,
    fmt: str,
    filters: tuple[str, ...],
    fields: str | None,
    unmask: bool,
    max_records: int,
    idle_timeout: float,
) -> None:
    """Stream TOPIC for analysis (masked text unless --unmask)."""
    try:
        settings = load_settings()
        taplib.message_type(topic)
        chosen = [f.strip() for f in fields.split(",") if f.strip()] if fields else []
        if chosen:
            taplib.check_fields(topic, chosen)
        elif fmt == "csv" and taplib.message_type(topic).__name__ == "Envelope":
            chosen = list(taplib.DEFAULT_ENVELOPE_FIELDS)
        parsed_filters = taplib.parse_filters(filters, topic)
        since_ms = None
        if since:
            try:
                when = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise taplib.TapError(
                    f"--since {since!r}: expected ISO 8601 like 2026-11-29T08:00:00Z"
                ) from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            since_ms = int(when.timestamp() * 1000)
    except (taplib.TapError, SettingsError) as exc:
        raise click.UsageError(str(exc)) from None
    if unmask:
        audit = Path(settings.state_dir) / "logs" / "tap-audit.log"
        audit.parent.mkdir(parents=True, exist_ok=True)
        entry = {"at": time.time(), "user": getpass.getuser(), "topic": topic, "action": "unmask"}
        with audit.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        click.echo(
            f"kefu tap: --unmask used by {entry['user']} on {topic}; logged to {audit}", err=True
        )
    stop_at_end = idle_timeout == 0 and (from_beginning or since_ms is not None)
    asyncio.run(
        _run(
            settings,
            topic,
            from_beginning,
            since_ms,
            fmt,
            parsed_filters,
            chosen,
            unmask,
            max_records,
            idle_timeout,
            stop_at_end,
        )
    )


async def _run(
    settings,
    topic,
    from_beginning,
    since_ms,
    fmt,
    filters,
    chosen,
    unmask,  # type: ignore[no-untyped-def]
    max_records,
    idle_timeout,
    stop_at_end,
) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from services.runtime.bus import aiokafka_security_kwargs

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        **aiokafka_security_kwargs(settings),
    )
    try:
        await asyncio.wait_for(consumer.start(), timeout=15)
    except Exception as exc:
        raise click.ClickException(
            f"cannot reach Kafka at {settings.kafka_bootstrap} ({type(exc).__name__}): is the stack up? run `kefu stack up`"
        ) from None
    writer = None
    written = 0
    try:
        # the consumer has no metadata for a topic it has not subscribed to: ask the cluster
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise click.UsageError(
                f"topic {topic} does not exist on {settings.kafka_bootstrap}; run `kefu stack up` to create the topics"
            )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        if since_ms is not None:
            offsets = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                found = offsets.get(tp)
                consumer.seek(tp, found.offset if found else ends[tp])
        elif from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        remaining = {tp for tp in tps if stop_at_end and ends[tp] > 0}
        if stop_at_end:
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if not remaining:
                return
        last = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                if idle_timeout and time.monotonic() - last > idle_timeout:
                    return
                continue
            last = time.monotonic()
            for tp, records in batch.items():
                for record in records:
                    row = taplib.to_row(record.value or b"", topic, unmask)
                    if filters and not taplib.matches(row, filters):
                        pass
                    else:
                        out = taplib.select(row, chosen) if chosen else row
                        if fmt == "jsonl":
                            sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
                        else:
                            flat = taplib.flatten(out)
                            if writer is None:
                                writer = csv.DictWriter(
                                    sys.stdout, fieldnames=list(flat), extrasaction="ignore"
                                )
                                writer.writeheader()
                            writer.writerow(flat)
                        written += 1
                        if max_records and written >= max_records:
                            return
                    if stop_at_end and record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            sys.stdout.flush()
            if stop_at_end and not remaining:
                return
    finally:
        await consumer.stop()
        logging.getLogger("aiokafka").setLevel(logging.ERROR)
