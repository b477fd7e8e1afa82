"""Chinese labels and Jinja filters of the web pages (the export labels are the single source)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment

from common.masking import mask_national_id, mask_phone
from outreach.services.campaigns import STATE_ZH
from outreach.services.escalations import ACTION_ZH
from results.exports import ESCALATION_LABELS, FIELD_LABELS, OUTCOME_LABELS, RISK_LABELS, STATUS_LABELS

ROLE_ZH = {"admin": "管理员", "staff": "热线工作人员", "worker": "社区工作人员"}
CONTACT_STATE_ZH = {"pending": "待呼叫", "dialing": "呼叫中", "done": "已完成", "skipped": "已跳过"}
FINAL_ZH = {**OUTCOME_LABELS, "unreachable": "无法联系", "do_not_call": "免打扰", "cancelled": "已取消"}
SMS_ZH = {"planned": "待发送", "queued": "排队中", "sending": "发送中", "accepted": "已提交", "sent": "已发送", "delivered": "已送达",
          "undelivered": "未送达", "failed": "发送失败", "cancelled": "已取消"}
AUDIT_ZH = {
    "login": "登录", "logout": "退出", "login.failed": "登录失败", "user.add": "新增账号", "user.reset": "重置账号",
    "resident.view": "查看居民", "resident.phone_shown": "显示号码", "audio.play": "播放录音",
    "export.unmasked": "导出（含完整号码）", "export": "导出", "escalation.assign": "认领", "escalation.callback": "记录回访",
    "escalation.close": "关闭", "escalation.reopen": "重新打开", "residents.import": "导入居民",
    "residents.list_unmasked": "列出居民（完整号码）", "campaign.create": "创建活动", "campaign.running": "开始/继续活动",
    "campaign.paused": "暂停活动", "campaign.cancelled": "取消活动", "campaign.completed": "活动完成",
    "campaign.rehearsal": "演练活动", "campaign.recover": "恢复中断呼叫", "do_not_call.add": "加入免打扰",
}


def install(env: Environment, tz: ZoneInfo) -> None:
    def local(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        return value.astimezone(tz).strftime(fmt) if value else ""

    def label(value: Any, table: str) -> str:
        tables: dict[str, dict[str, str]] = {
            "outcome": FINAL_ZH, "risk": RISK_LABELS, "kind": ESCALATION_LABELS, "status": STATUS_LABELS,
            "state": STATE_ZH, "contact": CONTACT_STATE_ZH, "field": FIELD_LABELS, "role": ROLE_ZH, "sms": SMS_ZH,
            "action": ACTION_ZH, "audit": AUDIT_ZH,
        }
        key = "" if value is None else str(value)
        return tables[table].get(key, key)

    def answer_value(value: Any) -> str:
        if value is True:
            return "是"
        if value is False:
            return "否"
        if value is None:
            return "—"
        if value == "family":
            return "家属代答"
        if isinstance(value, float):
            return f"{value:.1f}"
        if isinstance(value, list):
            return "、".join(str(v) for v in value)
        return str(value)

    def result_zh(value: str | None) -> str:
        if not value:
            return ""
        head, _, action = value.partition(":")
        base = {"reached": "已联系上", "not_reached": "未联系上", "robot_called_back": "机器人已回电"}.get(head, head)
        return base + (f"，{ACTION_ZH.get(action, action)}" if action else "")

    env.filters["local"] = local
    env.filters["label"] = label
    env.filters["answer"] = answer_value
    env.filters["mask_phone"] = mask_phone
    env.filters["mask_id"] = mask_national_id
    env.filters["result_zh"] = result_zh
    env.globals["STATE_ZH"] = STATE_ZH
    env.globals["ESCALATION_LABELS"] = ESCALATION_LABELS
    env.globals["STATUS_LABELS"] = STATUS_LABELS
    env.globals["ACTION_ZH"] = ACTION_ZH
