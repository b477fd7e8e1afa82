"""NLU and dialog-engine throughput on one core.

Prints one JSON line: {"replies_per_s": ..., "engine_steps_per_s": ..., "accuracy": {...}}
- replies_per_s: the built-in NLU over a varied set of short replies (yes/no and temperatures).
- engine_steps_per_s: events handled per second (start() counts as one) over whole conversations of
  the default script, with the built-in NLU understanding each spoken reply.
- accuracy: per set (dev = tests/data/nlu_dev.tsv, the set tuned on; frozen = tests/data/nlu_frozen.tsv,
  never tuned on; labelled = the older development set without topics), the accuracy per expectation
  and per category (right/rows), and whole calls right out of the scenario files (calls_dev.yaml,
  calls_frozen.yaml) through the engine.

Usage: .venv/bin/python bench/nlu_bench.py [--seconds 2.0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dialogs.nlu import make_nlu  # noqa: E402
from dialogs.nlu.types import Expectation, Nlu  # noqa: E402
from dialogs.script import load_script  # noqa: E402
from dialogs.types import Dtmf, Event, HangUp, NoInput, Utterance  # noqa: E402
from outreach.config import NluConfig  # noqa: E402

YES_NO_REPLIES = [
    "是的", "是", "对", "嗯", "嗯嗯", "对的", "有", "有的", "有点", "好像有", "没有", "没", "不是", "没得", "冇",
    "没有不舒服", "不是没有", "一直在咳", "有一点咳嗽", "没发烧，就是有点咳", "不知道", "说不清", "记不清了",
    "那个，没有啊", "就是 没有 发烧", "没 有", "嗯 是 的", "你说啥", "再说一遍", "我在开车", "我现在忙，下午三点再打",
    "找人工", "转人工服务", "你打错了", "不要再给我打电话了", "做了", "还没做", "明天去做", "大概没有", "应该没有吧",
]
TEMPERATURE_REPLIES = [
    "三十七度五", "37度5", "三十六度八", "三十八点五", "36.5", "三十七度二", "三十七度半", "37.3度",
    "三 十 七 度 二", "大概三十六度多", "没量过", "不知道", "三十九度", "四十度", "正常", "你说什么",
]
WORKLOAD: list[tuple[str, Expectation]] = [(r, Expectation("yes_no")) for r in YES_NO_REPLIES] + [
    (r, Expectation("temperature")) for r in TEMPERATURE_REPLIES
]

U = Utterance
CONVERSATIONS: list[Sequence[Event]] = [
    [U("是的"), U("没有"), U("没有"), U("没有"), U("做了")],
    [U("是的"), U("有点咳"), U("三十七度五"), U("有"), U("北京"), U("没有"), U("还没做")],
    [U("我是他妈妈"), U("好像有"), NoInput(), Dtmf("3"), Dtmf("8"), Dtmf("#"), U("你说啥"), U("没有"), U("没有"), U("做了")],
    [NoInput(), NoInput(), Dtmf("1"), U("没有"), U("我在开车")],
    [U("不是"), U("是的"), U("没有"), HangUp()],
    [Dtmf("1"), Dtmf("1"), *(Dtmf(k) for k in "37*5#"), Dtmf("2"), Dtmf("2"), Dtmf("1")],
]


def bench_nlu(nlu: Nlu, seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    while True:
        for text, expect in WORKLOAD:
            nlu.parse(text, expect)
        n += len(WORKLOAD)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed


def bench_engine(nlu: Nlu, seconds: float) -> float:
    script = load_script(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")
    contact = {"name": "张伟", "community": "幸福里社区"}
    steps = 0
    t0 = time.perf_counter()
    while True:
        for events in CONVERSATIONS:
            session = script.new_session(contact, nlu)
            session.start()
            steps += 1
            for event in events:
                if session.done:
                    break
                session.handle(event)
                steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return steps / elapsed


def accuracy() -> dict[str, object]:
    from dialogs.nlu import BuiltinNlu
    from tests.calls import check_call, load_calls
    from tests.nlu_sets import DATA_DIR, load_rows, score

    nlu = BuiltinNlu()
    out: dict[str, object] = {}
    for name, file in (("dev", "nlu_dev.tsv"), ("frozen", "nlu_frozen.tsv"), ("labelled", "nlu_labelled.tsv")):
        res = score(nlu, load_rows(DATA_DIR / file))
        out[name] = {
            "expect": {e: v["accuracy"] for e, v in res["expect"].items()},
            "categories": {c: f"{v['right']}/{v['rows']}" for c, v in res["categories"].items()},
        }
    script = load_script(ROOT / "dialogs" / "scripts" / "covid_screening.yaml")
    for name in ("dev", "frozen"):
        calls = load_calls(DATA_DIR / f"calls_{name}.yaml")
        wrong = [c["id"] for c in calls if check_call(script, c)]
        out[f"calls_{name}"] = {"right": len(calls) - len(wrong), "calls": len(calls), "wrong": wrong}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    nlu = make_nlu(NluConfig())
    bench_nlu(nlu, 0.2)  # warm caches
    replies = bench_nlu(nlu, args.seconds)
    steps = bench_engine(nlu, args.seconds)
    print(json.dumps({"replies_per_s": round(replies), "engine_steps_per_s": round(steps), "accuracy": accuracy()},
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
