"""Time the issued-invoice list at 100,000 invoices and print p50/p95 server times.

    .venv/bin/python bench/list_bench.py [--invoices 100000] [--requests 40] [--postgres URL]

Builds a fresh migrated database (SQLite in a temporary folder, or a PostgreSQL database
you name), bulk-inserts invoices spread over two years, then requests the list through
the app (the test client, so the figures are server time without the network).
"""

import argparse
import hashlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from portal import create_app  # noqa: E402
from portal.auth.views import create as create_user  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.models import Invoice  # noqa: E402
from portal.text import fold  # noqa: E402

NAMES = ["Công ty TNHH Hoàng Long", "Cửa hàng Bình Minh", "Nguyễn Văn An", "Đại lý Trần Gia",
         "Công ty Cổ phần Phú Mỹ", "Hộ kinh doanh Lê Văn", "Nhà hàng Phố Biển", "Khách lẻ"]  # fmt: skip
STATUSES = ["not_sent"] * 5 + ["sent"] * 8 + ["failed", "unknown"]


def load(count: int) -> None:
    rng = random.Random(1)
    xml = b"<HDon/>"
    sha = hashlib.sha256(xml).hexdigest()
    start = date.today() - timedelta(days=730)
    rows = []
    for number in range(1, count + 1):
        name = f"{rng.choice(NAMES)} {number % 997}"
        tax = f"03{rng.randint(10**7, 10**8 - 1)}" if rng.random() < 0.7 else ""
        email = f"kh{number % 5000}@example.com"
        total = rng.randint(10_000, 500_000_000)
        rows.append(dict(
            form=1, series="K26TAA" if number % 5 else "K26TBB", number=number,
            issued_on=start + timedelta(days=number * 730 // count), seller_name="Ánh Dương",
            seller_tax_code="0312678945", buyer_name=name, buyer_tax_code=tax, buyer_email=email,
            total_before_tax=total, total_tax=total // 10, total_amount=total + total // 10,
            amount_in_words="…", lookup_code=f"B{number:09d}", xml=xml, xml_sha256=sha,
            search_text=fold(f"{number:08d} {name} {tax} {email}"), send_status=rng.choice(STATUSES),
        ))  # fmt: skip
        if len(rows) == 5000:
            db.session.execute(insert(Invoice), rows)
            rows = []
    if rows:
        db.session.execute(insert(Invoice), rows)
    db.session.commit()


SCENARIOS = {
    "default page (this month)": "/",
    "all time, page 1": "/?period=all",
    "all time, page 50": "/?period=all&page=50",
    "search 'binh minh'": "/?period=all&q=binh+minh",
    "search a number": "/?period=all&q=54321",
    "tab failed, this year": "/?period=this_year&tab=failed",
    "series 1K26TBB, last month": "/?period=last_month&series=1K26TBB",
    "sort by total": "/?period=all&sort=-total",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--postgres", help="an empty PostgreSQL database URL")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="list-bench-"))
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder)  # the SQLite file is about 60 MB


def run(args, folder: Path) -> None:
    uri = args.postgres or f"sqlite:///{folder / 'bench.db'}"
    app = create_app({"SQLALCHEMY_DATABASE_URI": uri, "SECRET_KEY": "bench", "WTF_CSRF_ENABLED": False,
                      "RATELIMIT_ENABLED": False})  # fmt: skip
    app.instance_path = str(folder)
    with app.app_context():
        upgrade(directory=str(Path(__file__).resolve().parent.parent / "migrations"))
        started = time.perf_counter()
        load(args.invoices)
        print(
            f"loaded {args.invoices} invoices in {time.perf_counter() - started:.1f} s ({db.engine.dialect.name})"
        )
        if db.engine.dialect.name == "postgresql":
            # Autovacuum would have done this on a live database: without statistics and a
            # visibility map PostgreSQL neither plans well nor scans the indexes alone.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE invoice")
        create_user("bench", "bench", "viewer")
    client = app.test_client()
    client.post("/login", data={"username": "bench", "password": "bench"})
    print(f"{'scenario':32} {'p50 ms':>8} {'p95 ms':>8}")
    for label, url in SCENARIOS.items():
        client.get(url)  # warm up
        times = []
        for _ in range(args.requests):
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        times.sort()
        p95 = times[max(0, int(len(times) * 0.95) - 1)]
        print(f"{label:32} {statistics.median(times):8.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()
