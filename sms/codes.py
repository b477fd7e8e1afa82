"""Provider error codes: which are final for a message, which are retried, and what they mean in
Chinese for the staff who read the SMS state (sources: sms_nlu.md §1.3, aliyun_sms.md)."""

from __future__ import annotations

# Twilio REST error codes (twilio.com/docs/api/errors/NNNNN).
TWILIO_PERMANENT = {
    "21211": "号码无效（格式错误或不是手机号）",
    "21408": "未开通向该地区发送短信的权限",
    "21610": "该号码已在运营商处退订（回复过STOP）",
    "21612": "无法向该号码发送短信（线路不支持）",
    "21614": "该号码不是手机号码",
    "21635": "该号码是固定电话，无法接收短信",
    "30004": "短信被拦截（号码拒收）",
    "30005": "号码不存在或已停机",
    "30006": "固定电话或运营商不可达，无法接收短信",
    "30007": "短信被运营商过滤（内容或模板问题），请勿重复发送相同内容",
    "30008": "未知错误，运营商未说明原因",
}
TWILIO_TRANSIENT = {
    "20429": "请求过多（并发超限），稍后重试",
    "20500": "服务商内部错误，稍后重试",
    "20503": "服务商暂时不可用，稍后重试",
    "30001": "发送队列溢出，稍后重试",
    "30003": "手机无法接通（关机或无信号），稍后重试",
    "21611": "发送队列已满，稍后重试",
}
TWILIO_SYSTEM = {
    "20003": "Twilio 账号鉴权失败，请检查账号 SID 和令牌",
    "20404": "Twilio 账号或资源不存在，请检查配置",
    "21606": "发送号码不能发送短信，请检查 from_number",
}

# Aliyun SendSms business codes (returned in the JSON `Code`).
ALIYUN_PERMANENT = {
    "isv.MOBILE_NUMBER_ILLEGAL": "手机号码格式错误",
    "isv.BUSINESS_LIMIT_CONTROL": "触发运营商流控（同一号码发送过于频繁），今日不再重试",
    "isv.BLACK_KEY_CONTROL_LIMIT": "号码或内容在黑名单中",
    "isv.SMS_SIGNATURE_ILLEGAL": "短信签名不合法或未审核通过",
    "isv.SMS_TEMPLATE_ILLEGAL": "短信模板不合法或未审核通过",
    "isv.TEMPLATE_MISSING_PARAMETERS": "模板变量缺失",
    "isv.INVALID_PARAMETERS": "参数错误",
    "isv.INVALID_JSON_PARAM": "模板变量格式错误（变量值必须是字符串）",
    "isv.PARAM_LENGTH_LIMIT": "模板变量超出长度限制",
    "isv.PARAM_NOT_SUPPORT_URL": "模板变量中不允许出现链接",
    "isv.MOBILE_COUNT_OVER_LIMIT": "手机号码数量超过限制",
    "isv.DENY_IP_RANGE": "号码所在地区不允许发送",
}
ALIYUN_TRANSIENT = {
    "isp.SYSTEM_ERROR": "服务商系统错误，稍后重试",
    "isp.GATEWAY_ERROR": "服务商网关错误，稍后重试",
    "Throttling.User": "请求过于频繁（账号流控），稍后重试",
    "Throttling.Api": "请求过于频繁（接口流控），稍后重试",
    "Throttling": "请求过于频繁，稍后重试",
    "ServiceUnavailable": "服务商暂时不可用，稍后重试",
    "InternalError": "服务商内部错误，稍后重试",
}
ALIYUN_SYSTEM = {
    "isv.AMOUNT_NOT_ENOUGH": "短信账户余额不足，已暂停发送",
    "isv.OUT_OF_SERVICE": "短信业务已停机，已暂停发送",
    "isp.RAM_PERMISSION_DENY": "账号无短信发送权限（RAM 授权），请检查配置",
    "isv.ACCOUNT_NOT_EXISTS": "短信账号不存在，请检查配置",
    "InvalidAccessKeyId.NotFound": "AccessKey 不存在，请检查配置",
    "SignatureDoesNotMatch": "AccessKey 密钥错误（签名不匹配），请检查配置",
}

# Carrier receipt codes on undelivered/failed (Aliyun err_code on a report, Twilio ErrorCode).
RECEIPT_EXPLANATIONS = {
    "DELIVERED": "已送达",
    "MK:0000": "空号",
    "MK:0001": "停机",
    "MK:0005": "关机或不在服务区",
    "MK:0012": "手机存储满",
    "IC:0015": "号码在运营商黑名单",
    "UNDELIV": "运营商报告未送达",
    "EXPIRED": "超过有效期未送达（手机长时间关机）",
    **TWILIO_PERMANENT,
    **TWILIO_TRANSIENT,
}


def explain(code: str, fallback: str = "") -> str:
    """The Chinese explanation of a provider or carrier code."""
    for table in (TWILIO_PERMANENT, TWILIO_TRANSIENT, TWILIO_SYSTEM, ALIYUN_PERMANENT, ALIYUN_TRANSIENT,
                  ALIYUN_SYSTEM, RECEIPT_EXPLANATIONS):
        if code in table:
            return table[code]
    return fallback or (f"未送达（代码 {code}）" if code else "未送达")
