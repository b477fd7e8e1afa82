"""Reading a reply in the context of the question: "not an answer" kinds and which question a clause answers.

Pure functions over text already normalized by `builtin.normalize` (no spaces, '，' between clauses),
except `key_text`, which reads the raw reply. Used by `BuiltinNlu.parse`:

- `key_text`: key presses typed or spoken as text (37*5#, 三六星号五井号) -> the keys.
- `hold_on`: someone asks to wait or goes to fetch the resident (稍等, 我去叫他); not when they ask to be
  called later (等会儿再打 is busy).
- `scam` / `ask_bot`: suspicion of fraud; asking whether a machine is calling (a request for a person,
  转人工 / 让真人来, stays `human`).
- `self_identification`: the speaker says they are the resident (是我, 我就是, 本人, 我是王秀英) or names a
  relation to them (我是他女儿: the relation word as said; a neighbour or colleague is not family).
- `is_ack`: an acknowledgement only (嗯, 好的, 知道了, 你说).
- `clause_topics`: the topics a clause talks about (a temperature, a trip, the nucleic-acid test,
  contact with a case, a symptom), so a reply about another question is told from an answer.
- `both_ways`: hedged both ways (可能有也可能没有, 说有也有，说没有也没有).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# --------------------------------------------------------------------------- key presses as text

_KEY_WORDS = (("星号", "*"), ("井号", "#"), ("星", "*"), ("井", "#"))
_CN_KEY_DIGITS = {"零": "0", "〇": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4",
                  "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_KEY_TEXT_RE = re.compile(r"^[0-9*#]+$")


def key_text(raw: str) -> str | None:
    """The keys a reply types or spells out ("36*5#", "三六星号五井号", "36星5井"), or None when it is speech.

    Only replies made of nothing but keys count, and only when a `*` or `#` is among them or the reply
    is one digit: "37" said aloud is a spoken number, not a key press.
    """
    t = "".join(unicodedata.normalize("NFKC", raw).split())
    for word, key in _KEY_WORDS:
        t = t.replace(word, key)
    if any(c in t for c in "*#"):
        t = "".join(_CN_KEY_DIGITS.get(c, c) for c in t)
    if not t or not _KEY_TEXT_RE.match(t):
        return None
    if "*" in t or "#" in t or len(t) == 1:
        return t
    return None


# --------------------------------------------------------------------------- hold on / scam / robot

_HOLD_RE = re.compile(
    r"稍等|稍微等|稍后一下|等一下|等一等|等等|等会儿?|等下|等着|等一会儿?|等(?:一|两|几)分钟|等片刻|"
    r"(?:先)?(?:别|不要|莫)挂|"
    r"我(?:去|这就去|马上去|现在去)(?:给你)?(?:喊|叫|找|拿|看看|问|量)|我(?:喊|叫|找)(?:一下|一声)?(?:他|她|我)|"
    r"(?:给你|帮你)(?:叫|喊|找)(?:去|一下|他|她)?|(?:叫|喊|找)(?:他|她)去|"
    r"我把(?:电话|手机)(?:给|递给|拿给)|(?:我)?让(?:他|她)(?:来|过来)(?:听|接)|我问(?:问|一下)|我看(?:看|一下)|"
    r"(?:他|她)马上(?:来|过来|出来)|我现在(?:就)?量|温度计在找|开个?免提"
)
# "等会儿再打" / "等他回来再说": asking to be called later, not to wait on the line.
_LATER_RE = re.compile(r"再打|再说|再联系|再来电|再拨|打过来|打来|回电|打给我|回头")

_SCAM_RE = re.compile(
    r"骗子|骗人|诈骗|骗局|骗钱|骗我|冒充|上当|传销|推销|(?:是|都是)?假的(?:吧|吗)|我(?:怎么|凭什么)(?:信|相信)你|"
    r"怎么知道你(?:们)?不是|我不信(?:你|你们)"
)
# Asking for a person is a request (human), not a question about the caller.
_HUMAN_REQUEST_RE = re.compile(
    r"(?:转|找|要|换|让|叫|给我|接)(?:个|一个)?(?:人工|真人|活人|工作人员)|(?:跟|和)(?:人工|真人)说|有(?:没有)?(?:人工|真人|活人)|人工服务|"
    r"不(?:跟|和|想跟|想和)(?:机器|录音|机器人)"
)
_BOT_RE = re.compile(
    r"(?:你|您|这|这边)是(?:人工|真人)(?:客服|服务|的)?(?:吗|吧|啊)|机器人|机器|录音|电脑|人工智能|(?<![a-z])ai(?![a-z])|自动(?:打|拨|的|在)|智能客服|智能语音|自动语音|语音助手|自动的|"
    r"(?:是|是不是|是个)(?:真)?人(?:吗|啊|吧|还是|在)|真人(?:吗|啊|吧|还是|在)|(?:人|人工)(?:的)?还是|还是(?:真)?人"
)

# --------------------------------------------------------------------------- who is speaking

# Relations to the resident, longest first when matched. Scripts add their own (script-level keywords).
RELATIVES = (
    "爸爸", "爸", "父亲", "老爸", "妈妈", "妈", "母亲", "老妈", "老伴", "老伴儿", "老头", "老头子", "老太婆", "老婆子",
    "老婆", "老公", "爱人", "媳妇", "媳妇儿", "丈夫", "妻子", "对象", "儿子", "女儿", "闺女", "姑娘", "孩子", "儿媳妇",
    "儿媳", "女婿", "孙子", "孙女", "外孙", "外孙女", "孙媳妇", "爷爷", "奶奶", "外公", "外婆", "姥姥", "姥爷", "哥哥", "哥",
    "姐姐", "姐", "弟弟", "弟", "妹妹", "妹", "侄子", "侄女", "外甥", "外甥女", "舅舅", "姑姑", "阿姨", "姨", "叔叔", "婶婶",
    "伯伯", "嫂子", "弟媳", "家属", "家里人", "家人", "亲戚", "老伴", "公公", "婆婆", "岳父", "岳母", "丈母娘", "继父", "继母",
)
NON_RELATIVES = ("邻居", "同事", "朋友", "室友", "房东", "租客", "保姆", "护工", "同学", "领导", "老板", "物业")
_NAME_CHARS = r"[\u4e00-\u9fff]"
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪"
    "范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤欧司诸上常葛关温康柳卜"
)
_SELF_RE = re.compile(
    r"^(?:喂|嗯|哦|噢|哎|对|对对|是|是的|是啊|那|那个|你好|您好)*"
    r"(?:我就是(?:本人|他本人|她本人|他|她|" + f"[{_SURNAMES}]{_NAME_CHARS}{{1,2}}" + r")?|就是我(?:本人)?|是我(?:本人)?|我是本人|"
    r"我本人|本人|是本人|我是(?:他|她)本人|(?:你|您)?找的就是我|"
    r"我是(?:老|小)?" + f"[{_SURNAMES}]{_NAME_CHARS}{{0,2}}?" + r"|我是)"
    r"(?:本人)?(?:啊|呀|的|呢|哈|嘛|接的|在听|来了)?$"
)
_RELATIVE_TAIL = r"(?:啊|呀|的|呢|哈|嘛)?"


def _relation_re(relations: Iterable[str]) -> re.Pattern[str]:
    alts = "|".join(sorted({re.escape(r) for r in relations if r}, key=len, reverse=True))
    return re.compile(
        r"我是(?:他|她|它|" + f"[{_SURNAMES}]{_NAME_CHARS}{{1,2}}" + r")?(?:的)?(?:大|小|二|三|亲)?(?P<rel>" + alts + r")"
    )


_RELATION_CACHE: dict[tuple[str, ...], re.Pattern[str]] = {}
_NON_RELATIVE_RE = re.compile(
    r"我是(?:他|她|它)?(?:的)?[\u4e00-\u9fff]{0,3}?(?P<rel>" + "|".join(NON_RELATIVES) + r")"
)
_THEY_ARE_MY_RE = re.compile(r"(?:他|她)是我(?:的)?(?P<rel>" + "|".join(sorted(RELATIVES, key=len, reverse=True)) + r")")


_REPEATED_RE = re.compile(r"^(.+?)\1+$")


def is_self_clause(clause: str) -> bool:
    """是我 / 我就是 / 本人 / 我是王秀英 (also said twice: 是我是我)."""
    m = _REPEATED_RE.match(clause)
    return bool(_SELF_RE.match(m.group(1) if m else clause))


def self_identification(t: str, extra_relatives: Iterable[str] = ()) -> tuple[str, str | None] | None:
    """("resident", None), ("relative", relation word), ("other", word) for a neighbour or colleague, or None."""
    extra = tuple(sorted(set(extra_relatives)))
    rel_re = _RELATION_CACHE.get(extra)
    if rel_re is None:
        rel_re = _RELATION_CACHE[extra] = _relation_re((*RELATIVES, *extra))
    m = rel_re.search(t)
    if m is not None:
        return "relative", m.group("rel")
    m = _NON_RELATIVE_RE.search(t)
    if m is not None:
        return "other", m.group("rel")
    for clause in re.split(r"[，?]+", t):
        if is_self_clause(clause):
            return "resident", None
    m = _THEY_ARE_MY_RE.search(t)
    if m is not None:
        return "relative", m.group("rel")
    return None


# --------------------------------------------------------------------------- acknowledgements

_ACK_RE = re.compile(
    r"^(?:(?:嗯|恩|哦|噢|喔|好|好的|好嘞|好吧|行|行吧|可以|知道了|知道|明白|明白了|了解|收到|ok|okay|嗯哼|你说|你说吧|您说|说吧|"
    r"请说|请讲|你讲|你问吧|你问|您问|问吧|讲吧)[，?啊呀嗯]*)+$"
)
_BARE_UM_RE = re.compile(r"^(?:嗯)+$")


def is_ack(t: str) -> bool:
    return bool(_ACK_RE.match(t))


def is_bare_um(t: str) -> bool:
    return bool(_BARE_UM_RE.match(t.strip("，")))


# --------------------------------------------------------------------------- which question a clause answers

_CITIES = (
    "北京|上海|广州|深圳|武汉|杭州|南京|天津|重庆|成都|西安|苏州|长沙|郑州|沈阳|青岛|哈尔滨|大连|厦门|福州|济南|合肥|昆明|"
    "南昌|石家庄|太原|长春|贵阳|南宁|兰州|乌鲁木齐|呼和浩特|海口|三亚|宁波|无锡|温州|东莞|佛山|珠海|香港|澳门|台湾|外地|"
    "老家|国外|外省|省外|市外|湖北|广东|浙江|江苏|河南|河北|山东|四川|湖南|安徽|福建|江西|云南|贵州|广西|海南|陕西|山西|"
    "甘肃|青海|宁夏|新疆|西藏|内蒙|辽宁|吉林|黑龙江"
)
TOPIC_CUES: dict[str, re.Pattern[str]] = {
    "travel": re.compile(
        r"离开|本市|外地|外省|出差|旅游|旅行|回老家|出去|出门|出过|出省|出市|出城|在家|待在家|呆在家|哪儿?都没去|哪也没去|"
        r"哪里都没去|(?:去|到|回)(?:过|了)?(?:一)?趟?(?:" + _CITIES + r")"
    ),
    "second_test": re.compile(r"核酸|检测|采样|阴性|阳性|结果|测过|捅过|做咗"),
    "contact": re.compile(r"接触|确诊|疑似|病例|病人|密接|感染|得病的|阳性的人"),
    "temperature": re.compile(r"体温|温度|量了|\d+(?:\.\d+)?度|度[0-9半]|[0-9]+\*"),
}


def clause_topics(clause: str, has_symptom: bool, has_temperature: bool) -> set[str]:
    """The topics a clause talks about; `has_symptom` / `has_temperature` come from the caller's lexicon."""
    found = {name for name, cue in TOPIC_CUES.items() if cue.search(clause)}
    if has_temperature:
        found.add("temperature")
    if has_symptom:
        found.add("symptoms")
    return found


# --------------------------------------------------------------------------- hedged both ways

_BOTH_WAYS_RE = re.compile(
    r"(?:可能|也许|或许|好像|有可能|兴许)[^，]{0,8}，?(?:也|又|或者|或)(?:有)?(?:可能|许|或许|好像|兴许)|"
    r"(?:可能|也许|或许)[^，可也或]{1,6}(?:可能|也许|或许)|"
    r"(?:^|，)要?说[^，]{1,8}，要?说|又好像|一会儿?(?:有|是).{0,6}一会儿?"
)


def both_ways(t: str) -> bool:
    return bool(_BOTH_WAYS_RE.search(t))


def hold_on(t: str) -> bool:
    return bool(_HOLD_RE.search(t)) and not _LATER_RE.search(t)


def scam(t: str) -> bool:
    return bool(_SCAM_RE.search(t))


def ask_bot(t: str) -> bool:
    return bool(_BOT_RE.search(t)) and not _HUMAN_REQUEST_RE.search(t)
