"""The built-in NLU for short Chinese phone replies: yes/no, temperatures, choices, free text, global intents.

Pure and fast (no I/O, everything compiled at import). How a reply is read:

1. Normalize: NFKC (full-width digits/punctuation), lower case, spaces removed (Vosk puts spaces
   between words: "没有 发烧"), dialect and ASR homophones mapped to standard words (冇/木有/没得 → 没有,
   唔係 → 不是, 係 → 是, 恩 → 嗯, 可嗽 → 咳嗽, 不晓得 → 不知道).
2. Global intents first, because they are meant whatever was asked: opt_out (别再打了, 骚扰电话),
   wrong_number (打错了, 我不是他, 没这个人; a family member who says 我是他妈妈 is not a wrong number),
   human (转人工, 我要跟人说), busy (我在开车, 晚点再打, or a reply that is only a time: 明天上午吧; its
   value is the callback time from `timeparse`), repeat (你说啥, 再说一遍, 没听清, 啥).
3. yes_no: the reply is split into clauses (punctuation, 但是, 不过, 就是 ...) and each clause is
   tokenized by longest match against one lexicon of cue words: negators (没有, 不是, 不), existence
   (有), agreement (是, 对, 嗯), symptoms (发烧, 一直在咳, and negative-looking symptom words such as
   不舒服/没力气 kept whole, so 没有不舒服 is a negated symptom), past actions (去过, 做了), don't-know
   (说不清, 记不得了), hedges (好像, 可能, 应该), question echoes (有没有, 是不是), well-being (还好, 没事).
   Negators count: an odd number negates the next content word and keeps negating a run of symptoms
   (没有发烧咳嗽), an even number affirms (不是没有). A negation after a topic negates it
   (发烧没有). A clause with don't-know or an echo of the question asserts nothing.
   Then: a symptom named positively → affirm with symptoms; else existence (有/没有, 去过/没去);
   else a denied symptom → deny; else a stated temperature (≥ 37.3 → affirm with fever); else
   well-being → deny; else don't-know → unsure; else agreement (是/对/不是); else a lone 嗯 (weak yes);
   else a hedge alone (可能吧) → weak affirm. Hedges mark the result uncertain.
4. temperature: `temperature.find_temperature`, plausible 34–43 °C, else unsure.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from dialogs.nlu import context as ctx
from dialogs.nlu.temperature import Temperature, find_temperature, find_temperatures, parse_key_temperature
from dialogs.nlu.timeparse import is_time_only, parse_callback_time
from dialogs.nlu.types import Expectation, NluResult

FEVER_THRESHOLD_C = 37.3

# --------------------------------------------------------------------------- normalization

# fmt: off
_HOMOPHONES = {
    # dialect / slang negation
    "沒": "没",
    "冇": "没有",
    "無": "无",
    "木有": "没有",
    "么有": "没有",
    "莫有": "没有",
    "妹有": "没有",
    "美有": "没有",
    "梅有": "没有",
    "米有": "没有",
    "每有": "没有",
    "眉有": "没有",
    "煤油": "没有",
    "没油": "没有",
    "没友": "没有",
    "没又": "没有",
    "没得": "没有",
    "莫得": "没有",
    "冒得": "没有",
    "么得": "没有",
    "木得": "没有",
    "没的": "没有",
    # Cantonese
    "唔係": "不是",
    "唔系": "不是",
    "唔是": "不是",
    "唔知道": "不知道",
    "唔知": "不知道",
    "唔记得": "不记得",
    "唔该": "",
    "係": "是",
    "系呀": "是呀",
    "系啊": "是啊",
    "系嘅": "是的",
    "系的": "是的",
    "有嘅": "有的",
    "冇嘅": "没有",
    # ASR homophones
    "事的": "是的",
    "市的": "是的",
    "四的": "是的",
    "是滴": "是的",
    "是得": "是的",
    "不四": "不是",
    "不市": "不是",
    "不事": "不是",
    "队的": "对的",
    "对得": "对的",
    "对滴": "对的",
    "兑的": "对的",
    "對": "对",
    "恩": "嗯",
    "摁": "嗯",
    "嗯呐": "嗯",
    "嗯哪": "嗯",
    "嗯哼": "嗯",
    "不知道": "不知道",
    "不造": "不知道",
    "不晓得": "不知道",
    "晓不得": "不知道",
    "不知": "不知道",
    "接出": "接触",
    "接处": "接触",
    "节触": "接触",
    "街触": "接触",
    "发少": "发烧",
    "可嗽": "咳嗽",
    "咳漱": "咳嗽",
    "咳数": "咳嗽",
    "咳搜": "咳嗽",
    "磕嗽": "咳嗽",
    "科嗽": "咳嗽",
    "可搜": "咳嗽",
    "发骚": "发烧",
    "发稍": "发烧",
    "發燒": "发烧",
    "發熱": "发热",
    "頭": "头",
    "說": "说",
    "還": "还",
    "沒有": "没有",
}
# fmt: on
_HOMOPHONE_RE = re.compile("|".join(sorted(map(re.escape, _HOMOPHONES), key=len, reverse=True)))
_WS_RE = re.compile(r"\s+")
_PUNCT_RE = re.compile(r"[,.!;:、。…~\-—_'\"“”‘’()\[\]{}<>《》【】「」|/\\*#]+")
_HESITATION_RE = re.compile(r"^(?:嗯|呃|额|啊|那个)+(?:…|\.{2,}|。{2,}|-{2,})+$")


def normalize(text: str) -> str:
    """Compact, comparable text: NFKC, lower case, no spaces, homophones mapped, separators as '，'.

    A question mark is kept as '?' (it turns a lone 嗯 into "huh?").
    """
    t = unicodedata.normalize("NFKC", text).lower()
    t = _WS_RE.sub("", t)
    t = t.replace("[unk]", "").replace("<unk>", "")
    t = _HOMOPHONE_RE.sub(lambda m: _HOMOPHONES[m.group()], t)
    return _PUNCT_RE.sub("，", t).strip("，")


# --------------------------------------------------------------------------- global intents

# fmt: off
_OPT_OUT_RE = re.compile(
    r"(?P<strong>(?:以后|今后|再也|永远)(?:都|也)?(?:别|不要|不用|甭|莫|勿))"
    r"|(?:别|不要|不用|甭|莫|勿|不许|不准|少)(?P<rep>再|老|总|总是|老是|一直|天天|每天|成天|又)?"
    r"(?:给我|跟我|往我这|对我|找我)?(?:打|拨|来电|骚扰|打电话|打来|联系|烦|问)(?!针|疫苗|球|牌|车|工|扰民|错)"
    r"|(?P<kw>骚扰|拉黑|黑名单|投诉|举报|烦死|烦不烦|有完没完|滚|神经病|退订|再打我就|再打就|"
    r"把我.{0,8}(?:删|去掉|移除)|从名单.{0,3}(?:删|去掉)|删(?:掉|除)?(?:我的)?(?:号码|电话)|(?:号码|电话)(?:给我)?删|不想接(?:你们)?(?:的)?电话|不接受(?:调查|回访)|拒绝(?:回答|接听|调查)?)"
)
# Common surnames, to tell "我不是张伟" (a name: wrong number) from "我不是很清楚".
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪"
    "范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤欧阳司诸葛上官"
)
_WRONG_RE = re.compile(
    f"我不姓|我不是[{_SURNAMES}][\u4e00-\u9fff]{{1,2}}(?=[，?]|$)|(?:没有|没)[\u4e00-\u9fff]{{2,4}}?这(?:个|么个)?人|"
    r"打错|拨错|错号|号码错|号错|(?:号码|电话)(?:打)?不对|搞错人|找错人|找错了|认错人|不是我的?(?:号码|电话|手机)|"
    r"我不是(?:他|她|它|本人|你说的|你要找的|你们要找的|这个人)|(?<!有)(?:没有|没|无)(?:这|此|这个|这么个|那个|叫这个名字的?)(?:人|号)|"
    r"查无此人|不认识(?!什么|啥|任何|确诊|疑似|病|阳性|密接|感染|外地|[^，]{0,4}(?:病|确诊|感染|阳性|发烧|的人))|"
    r"(?:号码|电话|手机)(?:已经|早就?)?不是(?:他|她)的|早?就?换人了|这里没有(?:叫|这个|这么)|不是(?:他|她|[\u4e00-\u9fff]{2,3}?)的?(?:号码|电话|手机)|"
    r"(?:我)?不叫(?:这个|这|你说的)|没有?叫(?:这个|这|你说的)?名字|没(?:有)?这个名字|新号码|新办的|新号|刚办的|号码是新|号码(?:换|转)(?:了)?人|换号了|我刚换的号|不是这个人"
)
_FAMILY_RE = re.compile(
    r"(?:我是(?:他|她)?的?|(?:他|她|[\u4e00-\u9fff]{1,3}?)?是我的?)(?:爸爸|爸|妈妈|妈|父亲|母亲|老婆|老公|爱人|媳妇|丈夫|妻子|儿子|女儿|闺女|儿媳|女婿|孙子|孙女|"
    r"爷爷|奶奶|外婆|外公|姥姥|姥爷|哥|姐|弟|妹|家人|家属|亲戚|对象|舅|姑|姨|叔|婶|伯|邻居|同事|朋友|室友|房东|保姆|同学|领导|老板)"
)
# Someone else answered for the resident: 他不在 / 她出去了 / 他在上班.
_OTHER_PERSON_RE = re.compile(
    r"^(?:他|她)(?:现在|人|正)?(?:不在|出去|出门|没在|在睡|睡|去上班|上班去|在上班|上班了|在外地|在忙|在开会|住院|不方便接)"
)
_HUMAN_RE = re.compile(
    # Suspecting fraud (诈骗/骗子) is routed to a human: a community worker can establish trust and
    # still screen the resident, where an opt-out would lose them for good.
    r"诈骗|骗子|骗人|人工|真人|活人|客服|坐席|接线员|转人|"
    r"(?:我要|我想|让|叫|给我找|给我转|帮我转|要求|换个?)(?:跟|和|找|转|换)?(?:个|一个|你们)?"
    r"(?:人|工作人员|领导|负责人|医生|大夫|护士|你们领导|社区的?人?|居委会|真的人)(?:说|讲|聊|通话|对话|沟通|来|接)?"
    r"|(?:跟|和|找)(?:个|一个)?(?:真人|工作人员|你们领导|负责人|医生|大夫)|找(?:个|一个)人|(?:转|换)(?:个|一个)(?:真)?人|"
    r"(?:不会|不太会|不大会)(?:说|讲)普通话|听不懂普通话|"
    r"有(?:个|些)?问题(?:要|想)?(?:问|咨询)|我(?:要|想)咨询|问个问题|我要问问题|机器人|(?:是|是不是)(?:个)?(?:录音|机器)|不跟(?:机器|录音)"
)
_BUSY_RE = re.compile(
    r"(?<![不帮没])忙|开车|开着车|开会|上班呢|在上班|上着班|在外面|在路上|没空|没时间(?![去做测])|不方便|不太方便|不是很方便|"
    r"(?<!没)有事(?!吗|儿吗|情吗)|(?:等|过|晚)(?:一)?(?:会|会儿|下|点|些|阵|阵子)(?:儿)?(?:再)?(?:打|说|联系|聊|来电)|"
    r"回头(?:再)?(?:说|打|聊|联系)|改天|下次(?:再)?(?:打|说)|再打过来|打过来|回电|稍后|在吃饭|吃饭呢|在睡觉|睡觉呢|"
    r"在做饭|带孩子|干活|在工地|在开|在忙|正忙|在医院|在地里|在厂里|在车上|上课|在地铁|地铁上|在公交|公交车上|高铁上|火车上|飞机上|在洗澡|在值班|现在不行|不太好说话|不能说话|说话不方便"
)
# Busy words given as the reason something was not done (没空去, 工作忙还没去做): an answer, not "call later".
_BUSY_REASON_RE = re.compile(r"(?:没空|没时间|忙)(?:着|得很|得|了)?[^，?]{0,3}?(?:还没有?|没有?|不能|顾不上)?(?:去|做|测|检测|采样)")
# A call-back request without a time: 等我下班再打, 周末再打, 回家再说.
_CALLBACK_RE = re.compile(r"再打(?!我|就)|再联系|再来电|再拨|再聊|打过来|打来|等我.{0,8}再说|回家再说|以后再说|再说吧|有空再")
_DONE_ANSWER_RE = re.compile(r"(?:还没有?|没有?)(?:去|做|测|检测|采样)|(?:没空|没时间)(?:去|测|做核酸|做检测)")
# 他在睡觉，你晚点打: the resident is not there and the caller asks to be called later (busy).
_LATER_CALL_RE = re.compile(r"(?:晚|迟|过|等)(?:一)?(?:点|会儿?|些|阵)(?:儿)?(?:再)?(?:打|联系|来电)|再打|打过来|回电")
_CALLBACK_VERB_RE = re.compile(r"再打|打过来|打来|再说|再联系|再聊|再问|回电|打给我|联系我|再来电|再拨")
_REPEAT_RE = re.compile(
    r"再说一(?:遍|次|下)|再讲一(?:遍|次|下)|重复一?(?:遍|下|次)?|再来一(?:遍|次)|再问一(?:遍|次)|再念一遍|"
    r"没听(?:清|见|到|懂|明白)|听不(?:清|见|到|懂|明白|太清)|(?<!没)说(?:的)?(?:啥|什么|甚么)|讲(?:的)?(?:啥|什么)|"
    r"问(?:的)?(?:啥|什么)|说(?:的)?多少|(?:啥|什么)意思|大(?:点|一点)声|声音大|大声(?:点|一点)|说慢|慢(?:点|一点)说|"
    r"(?:你|您)(?:是)?(?:谁|哪位|哪里)|(?:你|您)(?:们)?是哪个(?![\u4e00-\u9fff])|哪位|哪里打来|信号不好|没声音|(?<!没)(?<!没有)有?(?:什么|啥)事(?!都没|也没|没|儿没)|"
    r"(?:哪个|什么)(?:部门|单位|机构)|(?:他|她)是谁|谁啊|谁呀|找谁|找(?:我|他|她)(?:干嘛|干啥|干什么|做什么)|干嘛的|干什么的|做什么的|什么情况|啥情况|怎么回事|哪个单位|什么单位|哪里的|是哪里|什么电话|"
    r"听得(?:到|见)吗|能听(?:到|见)吗|听到了?吗|在吗|喂喂"
)
# The part of _REPEAT_RE that asks who is calling or why (你哪位, 什么事), as opposed to not having heard:
# "是我，什么事" answers the question and asks back, so the answer wins.
_INQUIRY_RE = re.compile(
    r"(?:你|您)(?:们)?(?:是)?谁(?:啊|呀)?|(?:你|您)(?:们)?是哪个(?![\u4e00-\u9fff])|"
    r"(?:(?:你|您|这|那)(?:们|里|边)?(?:是|是从)?)?(?:"
    r"哪位|哪里|哪里打来的?|(?<!没)(?<!没有)有?(?:什么|啥)事(?:情|儿)?(?!都没|也没|没|儿没)|"
    r"(?:哪个|什么)(?:部门|单位|机构)的?|找(?:我)?(?:有)?(?:什么|啥)事|找谁|找(?:我|他|她)(?:干嘛|干啥|干什么|做什么)|干嘛的|干什么的|做什么的|哪里的|是哪里|什么电话"
    r")(?:啊|呀|吗|的)?"
)
_WEAK_REPEAT_RE = re.compile(r"^(?:(?:(?:啥|什么|哈|蛤|喂|啥子|什么东西|啥东西|啥玩意|what|pardon|sorry)+\?*)+|(?:嗯|啊|哦|诶|哎|咦|嗯嗯)\?+)$")
_OPT_OUT_SOFT_OVERRIDE_RE = re.compile(r"现在|等会|晚点|正在|在开|忙|开车|开会|一会")

# --------------------------------------------------------------------------- yes/no lexicon

(NEG, EXIST, AGREE, WEAK, SYM, VERB, VBARE, UNK, HEDGE, SOFT, ECHO, WELL, BREAK, FUTURE, FILL, HOME, DEGREE, OTHER, LOCAL) = range(19)

_SYMPTOMS: dict[str, tuple[str, ...]] = {
    "fever": ("发烧", "发热", "发高烧", "发低烧", "低烧", "高烧", "有点烧", "烧", "体温高", "体温有点高", "额头烫", "烫", "热度"),
    "cough": ("咳嗽", "咳", "干咳", "咳痰", "有痰", "痰多", "一直在咳", "老咳"),
    "fatigue": (
        "乏力", "没劲", "没有劲", "没力气", "没有力气", "浑身无力", "全身无力", "无力", "疲劳", "疲倦", "疲惫", "累",
        "没精神", "没有精神", "提不起劲", "没胃口", "不得劲", "虚", "犯困", "浑身没劲",
    ),
    "sore_throat": ("嗓子疼", "嗓子痛", "喉咙痛", "喉咙疼", "咽痛", "嗓子不舒服", "嗓子哑", "嗓子干", "喉咙痒", "嗓子痒", "嗓子发炎", "喉咙发炎"),
    "headache": ("头疼", "头痛", "头晕", "头昏"),
    "runny_nose": ("流鼻涕", "鼻塞", "鼻子不通", "打喷嚏", "流涕", "鼻子堵"),
    "diarrhea": ("拉肚子", "腹泻", "拉稀", "肚子疼", "肚子痛"),
    "vomiting": ("呕吐", "吐", "恶心", "想吐"),
    "chills": ("发冷", "怕冷", "打寒战", "打冷战", "畏寒"),
    "body_ache": ("酸痛", "肌肉痛", "浑身疼", "全身疼", "身上疼", "浑身酸", "关节痛", "腰酸背痛", "浑身痛"),
    "smell_taste": ("没味觉", "没有味觉", "没嗅觉", "没有嗅觉", "闻不到", "闻不出", "尝不出", "没味道", "吃不出味"),
    "breathing": ("胸闷", "气短", "喘", "呼吸困难", "喘不上气", "憋气", "气喘"),
    "unwell": (
        "不舒服", "不太舒服", "不大舒服", "难受", "不好受", "病", "生病", "感冒", "症状", "毛病", "不对劲", "身体不好",
        "不太好", "不大好", "疼", "痛", "发炎", "不适", "异常", "不正常",
    ),
}
_VERB_BASES = (
    "去", "回", "出去", "出门", "离开", "回来", "回去", "回老家", "做", "测", "检测", "打", "接触", "碰到", "碰见", "遇到", "见",
    "见到", "待", "呆", "住", "出差", "旅游", "外出", "走", "跑", "采样", "采", "到", "来", "参加", "接种", "出省",
    "出市", "出城", "出远门", "出过门", "出过差", "聚餐", "坐", "经过", "路过",
)
_LEXICON: dict[str, tuple[int, str]] = {}


def _add(kind: int, words: Iterable[str], payload: str = "") -> None:
    for w in words:
        _LEXICON.setdefault(w, (kind, payload))


_add(FILL, ("你好", "您好", "哈喽", "对不起", "不好意思", "谢谢", "没关系", "没办法", "就是说", "还是", "要是", "老是",
            "总是", "倒是", "真是", "于是", "算是", "所有", "只有", "一直", "有时候", "有时", "对了", "相对", "不管", "不然", "特别", "分别", "区别", "别的",
            "别人", "别处", "病人", "病例", "患者", "病毒", "确诊", "疑似", "密接", "病房", "医院", "有关", "没关", "算不算", "算吗", "算是吗", "联系", "关系"))
# Another topic inside the reply (做了，结果还没出): that clause says nothing about the question.
_add(OTHER, ("结果", "报告", "出结果", "阴性", "阳性", "绿码", "健康码"))
_add(ECHO, ("有没有", "有木有", "有没", "是不是", "是否", "对不对", "对吗", "是吗", "有吗", "是么", "有么",
            "有无", "是没是", "好不好", "要不要", "行不行", "咳不咳", "烧不烧", "发没发烧"))
_add(UNK, ("不知道", "不清楚", "不确定", "不记得", "记不得", "记不清", "记不住", "记不太清", "记不起来", "忘了", "忘记了", "忘记",
           "说不清", "说不好", "说不准", "不好说", "难说", "不一定", "没注意", "没留意", "没在意", "没量", "没量过",
           "没有量", "没有量过", "没测体温", "没测量", "没有测量", "不太清楚", "不是很清楚", "不太确定", "不是很确定", "搞不清",
           "搞不清楚", "拿不准", "不好讲", "讲不清", "不敢说", "谁知道", "天知道", "没数", "没底", "不懂", "没印象",
           "不了解", "说不上来", "看不出", "不大清楚", "不清", "说不上", "想不起来", "不记得了", "不想回答", "不想说", "不告诉你", "不想告诉你", "无可奉告", "保密", "不愿意说", "没太注意", "没怎么注意", "没有注意", "没有留意", "没太留意", "不太注意", "谁晓得", "我问谁", "鬼知道", "哪知道", "哪晓得", "不太记得", "吃不准"))
_add(HEDGE, ("好像", "可能", "应该", "大概", "也许", "估计", "似乎", "貌似", "或许", "感觉", "觉得", "差不多", "兴许", "怕是",
             "恐怕", "大约", "多半", "八成", "像是", "好似", "仿佛", "说不定", "没准", "大概率"))
_add(SOFT, ("吧", "吧?"))
_add(WELL, ("还好", "还行", "还可以", "挺好", "很好", "都好", "都挺好", "好着", "好着呢", "好好的", "蛮好", "良好", "正常",
            "一切正常", "都正常", "健康", "好多了", "好些了", "没事", "没事儿", "没啥事", "没什么事", "没毛病", "没病", "没问题",
            "身体好", "不错", "挺健康", "凑合", "好得很", "好了", "都好的", "没啥问题", "没什么问题", "没大碍", "都没事", "倍棒", "杠杠的", "好着"))
# Everyday local places: 去了趟菜市场 / 就在小区里转转 is not travel.
_add(LOCAL, ("买菜", "买东西", "遛弯", "散步", "溜达", "菜市场", "菜场", "市场", "超市", "楼下", "小区", "附近", "市区", "市内", "家门口", "公园", "村里", "镇上"))
_add(HOME, ("在家", "待在家", "呆在家", "宅在家", "在家待着", "在家呆着", "家里待着", "在本地", "在本市", "在市里", "没出门",
            "没离开", "一直在这", "哪也不去"))
_add(DEGREE, ("严重", "很严重", "挺严重", "轻微", "轻微的", "不严重", "不太严重", "不是很严重", "不算严重", "一点点", "稍微",
              "偶尔", "很少", "不多", "一丢丢", "有点儿", "一些"))
_add(BREAK, ("就是", "就", "只是", "只不过"))
_add(FUTURE, ("明天", "后天", "准备", "打算", "将要", "马上", "待会", "等会", "过两天", "下周", "改天", "要", "还要", "明早",
              "回头", "下午", "晚上", "今晚", "待会儿", "一会儿", "等下", "等一下", "一会", "这就", "就要", "正要", "过几天", "今天下午", "计划", "预约了", "约了", "还没到时间"))
# A plan or an appointment with no action done yet (约了明天, 打算后天): the answer to "done?" is "not yet".
_PLAN_WORDS = frozenset(("明天", "后天", "准备", "打算", "将要", "过两天", "下周", "明早", "改天", "还要", "正要", "就要",
                         "过几天", "计划", "预约了", "约了", "还没到时间", "月底", "周末", "下个月", "下礼拜", "下星期",
                         "过阵子"))
# Shared activities with someone (跟一个确诊的一起吃过饭): contact happened.
_add(VERB, ("吃过", "吃过饭", "吃了饭", "一起吃", "一块吃", "聊过", "聊过天", "说过话", "见过面", "握过手", "打过交道", "一起待过",
            "一起住", "一个办公室", "同一个", "坐一起", "一起"))
_add(NEG, ("没有", "没", "无", "未", "并没有", "从来没有", "从没", "从来没", "根本没有", "根本没", "完全没有", "压根没",
           "一点都没有", "一点也没有", "啥都没有", "什么都没有", "啥也没有", "什么也没有", "都没有", "也没有", "还没有", "还没",
           "没呢", "没啥", "没什么", "尚未", "未曾", "不曾", "没得", "啥都没", "一个都没有", "哪都没去", "哪也没去",
           "哪儿都没去", "哪里都没去", "哪有", "哪里有", "哪儿有", "怎么会有", "哪会", "有个屁", "忘记去", "忘了去",
           "忘了做", "忘记做", "没顾上", "没来得及", "还差"), "exist")
_add(NEG, ("不", "不是", "不对", "不是的", "不对的", "否", "非", "别", "不会", "不用", "不要", "不需要", "不行", "不可以", "从不", "一点也不", "一点都不", "不怎么", "不太", "不算", "no", "nope", "不存在", "否认", "怎么可能", "不可能", "哪可能", "哪能", "怎么会"), "agree")
_add(EXIST, ("在外地", "在外省", "出差在外", "有", "有的", "有点", "有一点", "有一些", "有些", "有过", "还有", "是有", "确实有", "有啊", "有呀"))
_add(AGREE, ("是", "是的", "是啊", "是呀", "是嘞", "是哒", "对", "对的", "对啊", "对呀", "对头", "没错", "当然", "肯定", "确实",
             "绝对", "必须的", "系", "好", "好的", "好嘞", "行", "可以", "中", "成", "ok", "okay", "yes", "yeah", "嗯对", "那当然",
             "是这样", "对对", "确定", "要得", "对头", "是嘞", "没错的", "本人", "我就是", "就是我", "是本人", "我本人"))
_add(WEAK, ("嗯", "嗯嗯", "昂", "嗯啊", "嗯呢"))
for _key, _words in _SYMPTOMS.items():
    _add(SYM, _words, _key)
for _base in _VERB_BASES:
    _add(VERB, (f"{_base}过", f"{_base}了", f"{_base}过了", f"{_base}完了", f"{_base}好了", f"{_base}完", f"已经{_base}"))
    _add(VBARE, (_base,))
_add(VERB, ("做核酸了", "做了核酸", "已经做了", "已做", "做好了", "测过了", "出去玩了", "回来了", "去过外地"))

# fmt: on
_LEX_RE = re.compile("|".join(sorted(map(re.escape, _LEXICON), key=len, reverse=True)))
# A clause ending in '?' followed by more text: the resident echoing the question before answering it.
_QUESTION_CLAUSE_RE = re.compile(r"(?:^|(?<=[，,]))([^，,?]+)\?+(?=[^?，,])")
_CLAUSE_RE = re.compile(r"[，,?]+|但是|但|不过|可是|然后|而且|另外")
_NUMERIC_ANSWER_RE = re.compile(r"^(?:按|选|摁|是)?(?P<d>1|一|幺|2|二|两)(?:号|个|键)?$")
_FILLER_EDGE_RE = re.compile(
    r"^(?:嗯+|啊+|呃+|额+|哦+|喂+|那个|就是|这个|然后|反正|其实|我觉得|我想想|，)+|(?:吧|啊|呀|呢|哦|嘛|啦|，)+$"
)
_HAS_NUMBER_RE = re.compile(r"[0-9一二两三四五六七八九十卅廿]")
# Self-declared doubt about a value (记不清, 没仔细看, 还是...来着) and range words between two values.
_DOUBT_RE = re.compile(
    r"记不清|记不住|记不得|不记得|没仔细看|没看清|看不清|不确定|说不好|说不准|不太准|不准|搞混|忘了|还是.{0,8}来着|也可能|"
    r"或者|可能.{0,8}可能|好像.{0,8}好像"
)
_RANGE_WORD_RE = re.compile(r"到|至|~|-|之间")
# A bound instead of a reading: 不到三十八度 (below 38) or 超过三十七度 (above 37).
_UPPER_BOUND_RE = re.compile(r"不到|没到|没超过|不超过|没过|低于|以下|以内|不足|不上")
_LOWER_BOUND_RE = re.compile(r"超过|高于|以上|不止|多于|大于")
_FILLER_ONLY_RE = re.compile(r"^(?:嗯|啊|呃|额|哦|喂|那个|就是|这个|然后)+$")
# The temperature question answered without a number but about the temperature (正常, 没量, 体温计坏了).
_TEMP_NORMAL_RE = re.compile(r"正常|没量|没有量|没测|量|体温计|温度计|烫|烧|热")


class _Clauses:
    """What the clauses of a yes/no reply assert."""

    __slots__ = (
        "sym_pos",
        "sym_neg",
        "exist",
        "agree",
        "weak",
        "well",
        "unk",
        "hedge",
        "soft",
        "echo",
        "future",
        "plan",
        "double",
        "numeric",
        "bare_verbs",
    )

    def __init__(self) -> None:
        self.sym_pos: list[str] = []
        self.sym_neg: list[str] = []
        self.exist: list[int] = []
        self.agree: list[int] = []
        self.weak = 0
        self.well = 0
        self.unk = False
        self.hedge = False
        self.soft = False
        self.echo = False
        self.future = False
        self.plan = False
        self.double = False
        self.numeric = False
        self.bare_verbs: list[int] = []  # 去 / 出门 with no aspect (还能去哪): weaker than 去过 / 没去


# A degree complement after a symptom (咳得睡不着, 疼得说不出话) describes it; its 不 negates nothing.
_COMPLEMENT_RE = re.compile(r"(?<=[咳烧疼痛晕累痒吐喘])得[^，?]*")


# A-not-A echoes of the question (出没出去, 去没去过, 做没做): asking, not answering; read like 有没有.
_A_NOT_A_RE = re.compile(r"(?<![没不])(?![没不算])([\u4e00-\u9fff])(?:没|不)\1[过了]?")


# 没什么力气 / 没啥精神: a symptom with a quantifier inside (read as 没力气 / 没精神), not "nothing".
_LACK_RE = re.compile(r"没(?:有)?(?:什么|啥|多少|多大|太多|一点)(力气|劲|精神|胃口|味道|味觉|嗅觉)")


def _analyze(t: str) -> _Clauses:
    out = _Clauses()
    t = _LACK_RE.sub(r"没\1", t)
    t = _COMPLEMENT_RE.sub("", t)
    t = _A_NOT_A_RE.sub(lambda m: "有没有" if m.group(1) not in "有是对" else m.group(), t)
    clauses = _CLAUSE_RE.split(t)
    asked = _QUESTION_CLAUSE_RE.findall(t) if "?" in t and len(clauses) > 1 else []
    for clause in clauses:
        if not clause or clause in asked:  # 发烧？没有: the first clause echoes the question
            continue
        words = [m.group() for m in _LEX_RE.finditer(clause)]
        neg = 0
        scope = 0  # negation count applied to the current run of symptoms
        pending: list[str] = []  # symptoms named without negation, waiting for a trailing 没有
        sym_pos: list[str] = []
        sym_neg: list[str] = []
        exist: list[int] = []
        agree: list[int] = []
        neutral = False
        future = False
        neg_domain = "agree"
        prev = ""
        bare: list[int] = []
        verb_at: list[int] = []  # indexes in `exist` that came from a verb (去了, 出去过)
        local = False
        for w in words:
            if w == prev:  # 没有没有, 对对对, 不不不: repetition is emphasis, not double negation
                continue
            prev = w
            kind, payload = _LEXICON[w]
            if kind == NEG:
                neg += 1
                scope = 0
                neg_domain = payload
            elif kind == SYM:
                if neg:  # 没有发烧咳嗽: the negation covers the whole run of symptoms
                    scope = neg
                    neg = 0
                if scope:
                    (sym_neg if scope % 2 else sym_pos).append(payload)
                    out.double = out.double or scope >= 2
                else:
                    pending.append(payload)
            elif kind == EXIST:
                # 有 is a fresh assertion; a negated 有 (没感觉有什么症状) negates what follows it.
                pol = -1 if neg % 2 else 1
                out.double = out.double or neg >= 2
                exist.append(pol)
                if pol > 0 and pending:
                    sym_pos.extend(pending)
                    pending.clear()
                scope = neg
                neg = 0
            elif kind == VERB or kind == VBARE:
                if neg:  # 还没去做: the negation covers the serial verbs
                    scope = neg
                    neg = 0
                pol = -1 if scope % 2 else 1
                if kind == VBARE and future and pol > 0:  # 明天去: not done yet
                    pol = -1
                    out.future = True
                out.double = out.double or scope >= 2
                if kind == VBARE and ((pol > 0 and not scope) or (scope and neg_domain == "agree")):
                    # 还能去哪 / 每天还去跳舞 / 我们不住一起: a habit or a wish, not a past event
                    bare.append(pol)
                    continue
                verb_at.append(len(exist))
                exist.append(pol)
                if pol > 0 and pending:
                    sym_pos.extend(pending)
                    pending.clear()
            elif kind == LOCAL:
                local = True
            elif kind == AGREE:
                agree.append(-1 if neg % 2 else 1)
                out.double = out.double or neg >= 2
                neg = 0
                scope = 0
            elif kind == WEAK:
                out.weak += 1
            elif kind == OTHER:
                if exist or agree or sym_pos or sym_neg or pending:  # 做了 结果 还没 出来: keep 做了
                    neg = 0
                    break
                neutral = True
            elif kind == UNK or kind == ECHO:
                neutral = True
                out.unk = out.unk or kind == UNK
                out.echo = out.echo or kind == ECHO
                neg = 0
            elif kind == HEDGE:
                out.hedge = True
            elif kind == SOFT:
                out.soft = True
            elif kind == WELL:
                if neg % 2 and neg_domain == "exist":  # 没有 没有 挺好的 (ASR, no comma): two statements
                    exist.append(-1)
                    out.well += 1
                elif neg % 2:
                    sym_pos.append("unwell")  # 不太好 / 不正常
                else:
                    out.well += 1
                neg = 0
                scope = 0
            elif kind == HOME:  # 一直在家: stayed at home, went nowhere
                exist.append(-1)
                neg = 0
                scope = 0
            elif kind == DEGREE:  # 不严重 / 偶尔 / 一点点: it is there, to some degree
                exist.append(1)
                if pending:
                    sym_pos.extend(pending)
                    pending.clear()
                neg = 0
                scope = 0
            elif kind == BREAK:
                neg = 0
                scope = 0
            elif kind == FUTURE:
                future = True
                out.plan = out.plan or w in _PLAN_WORDS
        if neg:  # a trailing negation: 没有 / 发烧没有 / 不是没有
            pol = -1 if neg % 2 else 1
            out.double = out.double or neg >= 2
            if pending:
                (sym_neg if pol < 0 else sym_pos).extend(pending)
                pending.clear()
            elif neg_domain == "exist":
                exist.append(pol)
            else:
                agree.append(pol)
        sym_pos.extend(pending)
        if local and bare:  # 就去超市买东西: a local errand is not a trip
            bare = [-1] * len(bare)
        if local and verb_at:  # 去了趟超市: went somewhere local, i.e. did not travel
            for i in verb_at:
                exist[i] = -1
        elif local and not exist and "在" in clause:  # 就在小区里: stayed local
            exist.append(-1)
        if neutral:
            continue
        out.sym_pos.extend(s for s in sym_pos if s not in out.sym_pos)
        out.sym_neg.extend(s for s in sym_neg if s not in out.sym_neg)
        out.exist.extend(exist)
        out.agree.extend(agree)
        out.bare_verbs.extend(bare)
    if out.bare_verbs and not out.exist and not out.agree and not out.unk:  # 我回老家 alone: still a yes
        out.exist.extend(out.bare_verbs)
    return out


_ANSWER_WORD_RE = re.compile(
    r"^(?:没有|没|有|有的|是|是的|对|对的|不是|不|去过|没去过|没去|做了|没做|做过|接触过|没接触过|还没|还没有|"
    r"应该没有|应该有|好像有|好像没有|可能有|可能没有|大概没有|肯定没有|肯定有)(?:吧|啊|呀|的)?$"
)


def _has_answer_clause(t: str) -> bool:
    """Some clause is a plain answer word (没有 / 有 / 是 / 去过 ...), possibly hedged."""
    return any(_ANSWER_WORD_RE.match(_FILLER_EDGE_RE.sub("", c)) for c in re.split(r"[，?]+", t) if c)


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


class BuiltinNlu:
    """Rule-based understanding of short Chinese replies (see the module docstring)."""

    name = "builtin"

    def __init__(self, low_confidence: float = 0.6) -> None:
        self.low_confidence = low_confidence
        self._choice_cache: dict[tuple[tuple[str, tuple[str, ...]], ...], list[tuple[str, str]]] = {}

    # ----------------------------------------------------------------- public

    async def understand(self, text: str, expect: Expectation) -> NluResult:
        """`parse`, awaitable (dialogs.nlu.types.AsyncNlu): pure and fast enough to run on the loop."""
        return self.parse(text, expect)

    def parse(self, text: str, expect: Expectation) -> NluResult:
        """Understand one reply to a question that expects `expect.kind` (about `expect.topic`)."""
        t = normalize(text)
        kind = expect.kind
        keys = ctx.key_text(text) if kind in ("yes_no", "temperature") else None
        if keys is not None:
            res = self._keys(keys, expect)
            if res is not None:
                return res
        if not t.strip("，?"):
            return NluResult("no_match", confidence=0.0)
        if expect.topic and kind in ("yes_no", "temperature"):
            res = self._in_context(t, text, expect)
            if res is not None:
                return res
        glob = self._global(t, free=kind == "free_text")
        if glob is not None:
            if glob.intent == "repeat" and kind == "yes_no" and _INQUIRY_RE.search(t):
                answered = self._answer_beside_inquiry(t, text)
                if answered is not None:
                    return answered
            return glob
        if kind == "yes_no":
            res = self._yes_no_in_topic(t, text, expect.topic)
        elif kind == "temperature":
            res = self._temperature(t, text, expect.topic)
        elif kind == "choice":
            res = self._choice(t, expect)
        elif kind == "free_text":
            cleaned = _FILLER_EDGE_RE.sub("", t.replace("?", "")) or t
            return NluResult("free_text", value=cleaned, confidence=0.9)
        else:
            raise ValueError(
                f"unknown expectation kind {kind!r}; expected one of yes_no, temperature, choice, free_text"
            )
        if res.intent == "no_match" and _WEAK_REPEAT_RE.match(t):
            return NluResult("repeat", confidence=0.8)
        return res

    # ----------------------------------------------------------------- context

    def _keys(self, keys: str, expect: Expectation) -> NluResult | None:
        """Key presses that arrived as text read exactly like real ones (37*5# = 37.5)."""
        value = parse_key_temperature(keys.rstrip("#")) if keys.rstrip("#") else None
        if expect.kind == "temperature":
            if value is not None:
                return NluResult("temperature", value, 1.0, False, self.name, (("keys", keys),))
            return None
        if len(keys.rstrip("#")) == 1:
            return None  # "1" / "2": the yes/no reading below handles it
        if value is not None and expect.topic and expect.topic != "temperature":
            return NluResult("other_answer", None, 0.9, False, self.name, (("temperature", value),))
        return None

    def _in_context(self, t: str, raw: str, expect: Expectation) -> NluResult | None:
        """The "not an answer" kinds, which need the question's context (see dialogs.nlu.context)."""
        if _OPT_OUT_RE.search(t):
            return self._global(t, free=False)
        if ctx.hold_on(t):
            return NluResult("hold_on", None, 0.9, False, self.name)
        if ctx.scam(t):
            return NluResult("scam", None, 0.9, False, self.name)
        if ctx.ask_bot(t):
            return NluResult("ask_bot", None, 0.9, False, self.name)
        topic = expect.topic
        relatives = [p for _, phrases in expect.keywords for p in phrases]
        who = ctx.self_identification(t, relatives)
        if who is not None:
            glob = self._global(t, free=False)
            kind, word = who
            if kind == "relative":
                if glob is not None and glob.intent in ("opt_out", "human"):
                    return glob
                if glob is not None and glob.intent == "busy" and ctx._LATER_RE.search(t):
                    return glob
                if topic == "identity":
                    return NluResult("self_relative", word, 0.9, False, self.name, (("family", word),))
            elif kind == "other":
                if topic == "identity" and (glob is None or glob.intent not in ("opt_out", "human", "busy")):
                    return NluResult("deny", False, 0.85, False, self.name, (("other_person", word),))
            else:
                if glob is not None and glob.intent in ("opt_out", "human", "busy", "wrong_number"):
                    return glob
                if topic != "identity":  # 是我，没有: an answer after saying who is speaking
                    rest = "，".join(c for c in re.split(r"[，?]+", t) if c and not ctx.is_self_clause(c))
                    kinds = {_LEXICON[m.group()][0] for m in _LEX_RE.finditer(rest)}
                    if rest and kinds & {NEG, EXIST, SYM} and expect.kind == "yes_no":
                        res = self._yes_no_in_topic(rest, rest, topic)
                        if res.intent in ("affirm", "deny", "unsure"):
                            return res
                return NluResult("self_resident", None, 0.9, False, self.name)
        if ctx.is_ack(t.rstrip("?")) and "?" not in t:
            bare_um = ctx.is_bare_um(t)
            if not bare_um or topic in ("symptoms", "temperature"):
                return NluResult("ack", None, 0.8, False, self.name)
        return None

    def _yes_no_in_topic(self, t: str, raw: str, topic: str) -> NluResult:
        """A yes/no reply read against the question's topic: clauses about another question are left
        out; a reply only about another question is `other_answer`; hedged both ways is `unsure`."""
        if topic in ("", "generic", "identity", "temperature"):
            return self._finish_yes_no(self._yes_no(t, raw), t)
        own: list[str] = []
        foreign: set[str] = set()
        for clause in re.split(r"[，?]+", t):
            if not clause:
                continue
            words = [m.group() for m in _LEX_RE.finditer(clause)]
            sym = any(_LEXICON[w][0] in (SYM, WELL) for w in words)
            temps = [x for x in find_temperatures(clause) if x.plausible] if _HAS_NUMBER_RE.search(clause) else []
            topics = ctx.clause_topics(clause, sym, bool(temps))
            if topic == "symptoms" and temps and max(x.value for x in temps) >= FEVER_THRESHOLD_C:
                topics.add("symptoms")
            if topic == "travel" and "在家" in clause:
                topics.add("travel")
            if not topics or topic in topics:
                own.append(clause)
            else:
                foreign |= topics
        if foreign:  # 嗯，有点咳嗽 at the travel question: the 嗯 is not an answer
            own = [c for c in own if not (ctx.is_ack(c) or _FILLER_ONLY_RE.match(c))]
        if not own:
            return NluResult("other_answer", None, 0.85, False, self.name, (("about", tuple(sorted(foreign))),))
        kept = "，".join(own)
        res = self._finish_yes_no(self._yes_no(kept, kept), kept)
        if res.intent == "no_match" and foreign:
            return NluResult("other_answer", None, 0.8, False, self.name, (("about", tuple(sorted(foreign))),))
        return res

    def _finish_yes_no(self, res: NluResult, t: str) -> NluResult:
        """Hedged both ways (可能有也可能没有) is unsure, whatever the last clause said."""
        if res.intent in ("affirm", "deny") and ctx.both_ways(t):
            return NluResult("unsure", None, 0.7, True, self.name, (("both_ways", True),))
        return res

    @staticmethod
    def _answer_then_explanation(t: str) -> bool:
        """没有，就是干活累的: a plain answer first, the busy word only in what explains it (no call-back asked)."""
        first, sep, rest = t.partition("，")
        return bool(sep) and bool(_ANSWER_WORD_RE.match(_FILLER_EDGE_RE.sub("", first))) and not _BUSY_RE.search(
            first) and not _CALLBACK_VERB_RE.search(t) and not _CALLBACK_RE.search(t)

    def _answer_beside_inquiry(self, t: str, raw: str) -> NluResult | None:
        """是我，什么事 / 没有，你哪位: the yes/no answer next to a question about the caller, if any."""
        rest = _INQUIRY_RE.sub("，", t).strip("，?")
        if not rest or _REPEAT_RE.search(rest) or _WEAK_REPEAT_RE.match(rest):
            return None
        res = self._yes_no(rest, rest)
        return res if res.intent in ("affirm", "deny") else None

    # ----------------------------------------------------------------- global intents

    def _global(self, t: str, free: bool) -> NluResult | None:
        m = _OPT_OUT_RE.search(t)
        if m is not None:
            strong = m.group("strong") or m.group("rep") or m.group("kw") or t[m.end() : m.end() + 1] == "了"
            if strong or not _OPT_OUT_SOFT_OVERRIDE_RE.search(t):
                return NluResult("opt_out", confidence=0.95)
            return NluResult("busy", value=parse_callback_time(t), confidence=0.85)
        if _WRONG_RE.search(t) and not _FAMILY_RE.search(t):
            return NluResult("wrong_number", confidence=0.95)
        if _HUMAN_RE.search(t):
            return NluResult("human", confidence=0.95)
        if (
            _BUSY_RE.search(t)
            and not (_OTHER_PERSON_RE.match(_FILLER_EDGE_RE.sub("", t)) and not _LATER_CALL_RE.search(t))
            and not (_BUSY_REASON_RE.search(t) and _DONE_ANSWER_RE.search(t))
            and not self._answer_then_explanation(t)
        ):
            return NluResult("busy", value=parse_callback_time(t), confidence=0.9)
        if _REPEAT_RE.search(t):
            return NluResult("repeat", confidence=0.9)
        if _CALLBACK_RE.search(t):
            return NluResult("busy", value=parse_callback_time(t), confidence=0.85)
        if _WEAK_REPEAT_RE.match(t):
            return NluResult("repeat", confidence=0.85)
        if not free:
            when = parse_callback_time(t)
            if when is not None and (_CALLBACK_VERB_RE.search(t) or is_time_only(t)):
                temp = find_temperature(t) if _HAS_NUMBER_RE.search(t) else None
                if temp is None or not temp.plausible:  # 三六点五 is 36.5 °C, not 18:05
                    return NluResult("busy", value=when, confidence=0.85)
        return None

    # ----------------------------------------------------------------- yes/no

    def _yes_no(self, t: str, raw: str) -> NluResult:
        if _HESITATION_RE.match(_WS_RE.sub("", raw)):
            return NluResult("no_match", confidence=0.0)
        nm = _NUMERIC_ANSWER_RE.match(t.rstrip("，?"))
        if nm is not None:  # "按1" / "一" said instead of pressing the key
            yes = nm.group("d") in ("1", "一", "幺")
            return NluResult("affirm" if yes else "deny", value=yes, confidence=0.85)
        detail: list[tuple[str, Any]] = []
        family = _FAMILY_RE.search(t)
        if family is not None:  # 我是他妈妈: someone else answered; 是 here is not a yes
            detail.append(("family", family.group().rpartition("是")[2].lstrip("他她我的")))
            t = _FAMILY_RE.sub("，", t)
        if any(_OTHER_PERSON_RE.match(_FILLER_EDGE_RE.sub("", c)) for c in t.split("，")):
            detail.append(("other_person", True))
            return NluResult("deny", False, 0.8, False, self.name, tuple(sorted(detail)))
        a = _analyze(t)
        intent = ""
        conf = 0.0
        if a.sym_pos:
            intent, conf = "affirm", 0.9
        elif a.exist:
            last = a.exist[-1]
            intent = "affirm" if last > 0 else "deny"
            conf = 0.95 if all(p == last for p in a.exist) else 0.7
        elif a.sym_neg:
            intent, conf = "deny", 0.95
        temp = None
        if _HAS_NUMBER_RE.search(t) and (not intent or "fever" in a.sym_pos or "fever" in a.sym_neg):
            temp = find_temperature(raw)
            if temp is not None and temp.plausible:
                detail.append(("temperature", temp.value))
                if not intent:
                    if temp.value >= FEVER_THRESHOLD_C:
                        intent, conf = "affirm", 0.85
                        a.sym_pos.append("fever")
                    else:
                        intent, conf = "deny", 0.85
        if intent and a.unk and not a.sym_pos and not _has_answer_clause(t):
            # 他去没去我不知道，他自己住: the explanation beside "I don't know" is not an answer
            return NluResult("unsure", confidence=0.85)
        if not intent:
            if a.well:
                intent, conf = "deny", 0.8
            elif a.unk:
                return NluResult("unsure", confidence=0.9)
            elif a.plan:  # only a plan (约了明天): not done yet
                intent, conf = "deny", 0.75
                a.future = True
            elif family is not None:  # 是，他是我爸: the 是 confirms the number, not the person
                intent, conf = "deny", 0.8
            elif a.agree:
                last = a.agree[-1]
                intent = "affirm" if last > 0 else "deny"
                conf = 0.9 if all(p == last for p in a.agree) else 0.7
            elif a.weak:
                intent, conf = "affirm", 0.75
            elif a.hedge:
                intent, conf = "affirm", 0.55
            else:
                return NluResult("no_match", confidence=0.0)
        if a.sym_pos:
            detail.append(("symptoms", _dedupe(a.sym_pos)))
        if a.sym_neg:
            detail.append(("denied_symptoms", _dedupe(a.sym_neg)))
        if a.future and intent == "deny":
            detail.append(("planned", True))
        if a.double:
            conf = min(conf, 0.8)
        uncertain = False
        if a.hedge:
            conf = min(conf, 0.55)
            uncertain = True
        if a.unk or a.echo:  # an answer next to "I don't know"
            conf = min(conf, 0.55)
            uncertain = True
        if a.soft:
            conf = min(conf, 0.8)
        if temp is not None and temp.approximate:
            uncertain = True
        uncertain = uncertain or conf < self.low_confidence
        if uncertain:
            detail.append(("hedged", True))
        return NluResult(
            intent, intent == "affirm", round(conf, 3), uncertain, self.name, tuple(sorted(detail))
        )

    # ----------------------------------------------------------------- temperature

    def _temperature(self, t: str, raw: str, topic: str = "") -> NluResult:
        """One plausible value; a vague value (三十七度多), a range, two values on both sides of the fever
        threshold or given with self-declared doubt (记不清, 没仔细看) are `unsure` with what was heard."""
        # 一直 / 一下 / 一趟 are not readings: a bare small number without 度 says nothing about the temperature
        found = [x for x in find_temperatures(raw) if x.plausible or x.value >= 10 or "度" in x.span]
        plausible = [x for x in found if x.plausible]
        if plausible:
            last = plausible[-1]
            why = self._vague_temperature(plausible, t)
            if why is not None:
                return NluResult("unsure", None, 0.7, True, self.name, (("heard", last.span), (why, True)))
            conf = 0.75 if last.approximate else 0.95
            return NluResult(
                "temperature", last.value, conf, last.approximate or conf < self.low_confidence, self.name,
                (("heard", last.span),),
            )
        if found:
            return NluResult("unsure", None, 0.7, True, self.name, (("implausible", found[-1].value),))
        a = _analyze(t)
        if topic and not a.unk:
            other = self._other_topics(t)
            if other:
                return NluResult("other_answer", None, 0.8, False, self.name, (("about", tuple(sorted(other))),))
        detail: list[tuple[str, Any]] = []
        if a.sym_neg or a.well:
            detail.append(("normal", True))
        if a.sym_pos:
            detail.append(("symptoms", _dedupe(a.sym_pos)))
        if a.unk or detail or a.exist or a.agree or a.hedge or a.weak:
            return NluResult("unsure", None, 0.8, True, self.name, tuple(sorted(detail)))
        return NluResult("no_match", confidence=0.0)

    @staticmethod
    def _vague_temperature(values: list[Temperature], t: str) -> str | None:
        if any(x.vague for x in values):
            return "vague"
        # A bound whose range holds both sides of the fever threshold says neither fever nor none:
        # 不到三十八度 may be 37.5; 超过三十七度 may be 37.1. (不到三十七度 is clearly no fever: kept.)
        last = values[-1].value
        if (_UPPER_BOUND_RE.search(t) and last > FEVER_THRESHOLD_C) or (
                _LOWER_BOUND_RE.search(t) and not _UPPER_BOUND_RE.search(t) and last < FEVER_THRESHOLD_C):
            return "bound"
        distinct = sorted({x.value for x in values})
        if len(distinct) > 1:
            if distinct[0] < FEVER_THRESHOLD_C <= distinct[-1]:
                return "conflicting"
            if _RANGE_WORD_RE.search(t) or _DOUBT_RE.search(t):
                return "range"
        if _DOUBT_RE.search(t):
            return "doubtful"
        return None

    @staticmethod
    def _other_topics(t: str) -> set[str]:
        """Topics other than the temperature a number-less reply at the temperature question is about."""
        out: set[str] = set()
        if _TEMP_NORMAL_RE.search(t):
            return out
        for clause in re.split(r"[，?]+", t):
            words = [m.group() for m in _LEX_RE.finditer(clause)]
            sym = any(_LEXICON[w][0] == SYM and _LEXICON[w][1] != "fever" for w in words)
            fever = any(_LEXICON[w][0] == SYM and _LEXICON[w][1] == "fever" for w in words)
            topics = ctx.clause_topics(clause, sym and not fever, False) - {"temperature"}
            out |= topics
        return out

    # ----------------------------------------------------------------- choice

    def _choice_table(self, expect: Expectation) -> list[tuple[str, str]]:
        table = self._choice_cache.get(expect.options)
        if table is None:
            table = []
            for key, phrases in expect.options:
                for p in (key, *phrases):
                    n = normalize(p)
                    if n:
                        table.append((n, key))
            table.sort(key=lambda kv: len(kv[0]), reverse=True)
            self._choice_cache[expect.options] = table
        return table

    def _choice(self, t: str, expect: Expectation) -> NluResult:
        best_len = 0
        found: set[str] = set()
        for phrase, key in self._choice_table(expect):
            if len(phrase) < best_len:
                break
            if phrase in t:
                best_len = len(phrase)
                found.add(key)
        if len(found) == 1:
            return NluResult("choice", found.pop(), 0.9)
        if not found:
            m = re.search(r"第(?P<n>[1-9一二三四五六七八九])(?:个|项|种)?", t)
            if m is not None:
                n = "一二三四五六七八九".find(m.group("n")) + 1 or int(m.group("n"))
                if 1 <= n <= len(expect.options):
                    return NluResult("choice", expect.options[n - 1][0], 0.85)
        return NluResult("no_match", confidence=0.0)
