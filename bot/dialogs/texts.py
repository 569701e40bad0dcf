"""What the account says to residents. Plain words, short lines, for elderly users too."""

ACCOUNT_NAME = "民意直通车"

WELCOME = (
    "您好，欢迎关注{name}！\n"
    "在这里您可以：\n"
    "· 反映问题：直接发文字、语音、照片或位置\n"
    "· 查询进度：回复「查询」\n"
    "· 绑定网格：发送您家的位置，或回复「绑定」\n"
    "遇到正在发生的危险，请立即拨打110、119或120。"
).format(name=ACCOUNT_NAME)

PRIVACY = (
    "【隐私说明】\n"
    "我们只收集办理您诉求所需的信息（您反映的内容、照片、位置），仅用于受理、转办和回访，"
    "不会公开您的身份。您可随时回复「我的数据」查看，或回复「删除我的数据」申请删除。"
)

ASK_CONSENT = "回复「同意」表示您同意上述说明，即可开始反映问题；回复「取消」放弃。"
CONSENT_THANKS = "谢谢！您已同意隐私说明。"
CONSENT_NEEDED = "反映问题前，请先阅读隐私说明。"

HELP = (
    "怎么用：\n"
    "1. 反映问题：直接发文字或语音，说清是什么事、在哪里；可以再发照片、位置\n"
    "2. 查询进度：回复「查询」，或发送工单编号\n"
    "3. 绑定网格：发送位置，或回复「绑定」\n"
    "4. 取消正在填写的内容：回复「取消」"
)

REPORT_PROMPT = "请直接发送文字或语音，说清是什么问题、在哪里。可以附上照片和位置。"
EMERGENCY_PROMPT = (
    "如遇正在发生的危险，请立即拨打110（治安）、119（火警）、120（急救）。\n"
    "您也可以直接描述情况，我们会马上转给值班人员。"
)
EMERGENCY_ADVICE = "情况紧急，已直报值班人员。如有人身危险，请立即拨打110、119或120！"

DRAFT_STARTED = "收到，您反映的是：\n「{summary}」\n还可以继续补充文字、照片或位置。\n回复「1」提交，回复「取消」放弃。"
DRAFT_MEDIA_STARTED = "已收到{kind}。请再用文字或语音说明是什么问题、在哪里。\n回复「1」直接提交，回复「取消」放弃。"
DRAFT_ADDED = "已补充{kind}。回复「1」提交，回复「取消」放弃。"
DRAFT_EMPTY = "还没有收到您要反映的内容，请先用文字或语音描述问题。"
DRAFT_CANCELLED = "已取消，本次内容没有提交。"
DRAFT_EXPIRED = "您上次没有提交的内容已超过{minutes}分钟，已自动作废。"
NOTHING_TO_CANCEL = "当前没有正在填写的内容。"

TICKET_CREATED = (
    "您的诉求已受理！\n"
    "编号：{number}\n"
    "类别：{category}\n"
    "{routing_line}\n"
    "我们将在{due}前联系处理。回复「查询」可查看进度；如需补充照片或位置，现在直接发送即可。"
)
# A duplicate of another resident's ticket: never name that ticket (it is theirs).
TICKET_DUPLICATE = (
    "您的诉求已记录，编号：{number}\n"
    "这个问题已有群众反映，相关部门正在办理，我们已将您的反映一并处理，"
    "办理进展会及时告诉您。回复「查询」可查看进度；如需补充照片或位置，现在直接发送即可。"
)
REPEAT_LINE = "您此前反映的同一问题（工单 {original}）还在办理中，本次已作为再次反映记录，我们会督促加快办理。"
ROUTED_LINE = "已转交：{area}{department}"
TRIAGE_LINE = "已转交区综治中心，工作人员会尽快分派。"
EVIDENCE_ATTACHED = "已将{kind}补充到工单 {number}。"

NO_TICKETS = "您还没有反映过问题。直接发送文字或语音即可反映。"
TICKET_LIST_HEAD = "您最近的诉求："
TICKET_LIST_ITEM = "{index}. {number}【{status}】{category}\n   {created}提交"
TICKET_LIST_TAIL = "发送编号可查看详情。"
TICKET_NOT_FOUND = "没有找到编号为 {number} 的诉求，请核对后再试。"
TICKET_DETAIL = "编号：{number}\n状态：{status}\n类别：{category}\n内容：{summary}\n办理记录：\n{timeline}"

BIND_CHOOSE_COMMUNITY = "请回复数字选择您所在的社区：\n{options}\n回复「取消」放弃。"
BIND_CHOOSE_GRID = "请回复数字选择您所在的网格：\n{options}"
BIND_BAD_CHOICE = "请回复列表中的数字，或回复「取消」。"
BIND_DONE = "已绑定您的所属网格：{area}。\n今后反映问题时，没有说明位置的，将默认转给该网格。"
BIND_BY_LOCATION = "已根据位置绑定您的所属网格：{area}。\n如要反映这里的问题，请直接发送文字描述。"
LOCATION_OUTSIDE = "这个位置不在本区网格服务范围内。您可以回复「绑定」手动选择社区。"

DATA_SUMMARY = "我们保存的您的信息：\n关注时间：{subscribed}\n所属网格：{area}\n诉求数量：{tickets}件"
DATA_DELETE_ACK = "已收到您的删除申请，工作人员将在15个工作日内处理并通知您。"

UNKNOWN_MESSAGE = "暂不支持这种消息。请发送文字、语音、照片或位置。"

MEDIA_KIND = {
    "image": "照片",
    "voice": "语音",
    "video": "视频",
    "shortvideo": "小视频",
    "location": "位置",
    "link": "链接",
    "text": "文字",
}

INTAKE_FAILED = "抱歉，您刚才发送的消息未能处理成功，请稍后重新发送；紧急情况请直接拨打110、119或120。"

# ---------------------------------------------------------------- conversation (intents)
GREETING = "您好！我是{name}。有什么问题，直接用文字或语音告诉我就行，比如「幸福里3号楼电梯坏了」。".format(name=ACCOUNT_NAME)
THANKS = "不客气！有新情况随时告诉我们。"
GOODBYE = "好的，再见！有事随时发消息给我们。"
NO_SUBSTANCE = "没太看明白您的意思。要反映问题，请说清是什么事、在哪里，比如「幸福里3号楼电梯坏了」；回复「帮助」看怎么用。"
HUMAN_IN_HOURS = "需要人工服务，请拨打{number}热线（服务时间：工作日{hours}）。已通知值班工作人员，他们会尽快联系您。"
HUMAN_OUT_OF_HOURS = "需要人工服务，请在工作日{hours}拨打{number}热线。现在是非工作时间，您也可以直接在这里留言，我们上班后第一时间处理。"
HUMAN_NOTICE = "【转人工】用户 {who} 请求人工服务，请尽快通过公众号或电话联系。"
CHOOSE_INTENT = "请问您是想：\n{options}\n请回复数字。"
NOTHING_TO_SUBMIT = "现在没有待提交的内容。要反映问题，请直接发送文字或语音。"
NOTHING_TO_SUBMIT_SAVED = "您上次没有提交的内容还保存着：\n「{summary}」\n回复「继续」接着填写。"
OTHERS_TICKET = "只能查询您本人反映的诉求。"
TICKET_NOTES = "处理说明：\n{notes}"

# Guided report: one question at a time, then a summary to confirm.
ASK_PROBLEM = "能具体说说是什么问题吗？比如「电梯坏了」「楼下很吵」。\n（回复「1」提交，回复「取消」放弃）"
ASK_PLACE = "请问是在哪个小区、哪栋楼？也可以直接发送位置。\n（回复「1」提交，回复「取消」放弃）"
DRAFT_SUMMARY = "请确认：\n类别：{category}\n地点：{place}\n内容：{summary}\n回复「1」提交，回复「取消」放弃，也可以继续补充。"
PLACE_UNKNOWN = "未说明"
MEDIA_RECEIVED = "已收到{kind}。"
DRAFT_HELD = "您正在填写的内容还没有提交。回复「1」提交，回复「取消」放弃。"

# Drafts that time out are kept for a day.
DRAFT_EXPIRED_KEPT = "您有一条反映没有提交：\n「{summary}」\n内容已为您保存一天，回复「继续」可接着填写并提交。"
DRAFT_RESUMED = "已恢复您没有提交的内容：\n「{summary}」\n回复「1」提交，也可以继续补充。"
NO_SAVED_DRAFT = "没有需要继续填写的内容。要反映问题，请直接发送文字或语音。"

# Urges and answers that reach their ticket.
URGED = "已为您催办工单 {number}（{status}）。\n办理：{handler}\n时限：{due}前\n我们会督促尽快处理。"
URGE_NOTICE = "【催办】工单 {number} 群众催促办理（第{count}次），请尽快处理。\n内容：{summary}"
NO_OPEN_TICKET = "您目前没有正在办理的诉求。要反映新问题，请直接发送文字或语音。"
CHOOSE_TICKET = "您有几件诉求正在办理，请问是哪一件？\n{options}\n请回复数字。"
ANSWER_ATTACHED = "已将您补充的{kind}转给工单 {number} 的办理人员，谢谢配合。"
SUPPLEMENT_ATTACHED = "已将补充内容记入工单 {number}。"
UNASSIGNED = "区综治中心（正在分派）"

# ---------------------------------------------------------------- staff in the chat (bot/dialogs/staff.py)
# {commands}: the staff commands of config/notices.toml, e.g. 接单 N、办结 N 说明、退回 N 原因、我的工单
STAFF_BOUND = "绑定成功：您好，{name}（{role}）！今后新工单、催办等通知会发到这个微信。\n可用指令：{commands}"
STAFF_HELP = ("{name}（{role}），您好。可用指令：{commands}\n"
              "N 是工单编号，或「我的工单」列表中的序号。\n"
              "如需以群众身份反映问题，请使用个人微信号。")
STAFF_NOT_A_COMMAND = "这条消息不是工作指令，没有登记为群众诉求。"
STAFF_DISABLED = "您的工作人员账号已停用，不能再通过微信办理工单；如有疑问，请联系系统管理员。"
BIND_BAD_CODE = "绑定码不正确，请核对后重新发送「绑定 绑定码」。绑定码由管理员生成，请向管理员索取。"
BIND_EXPIRED = "这个绑定码已过期，请联系管理员重新生成。"
BIND_USED = "这个绑定码已经使用过，请联系管理员重新生成。"
BIND_LOCKED = "绑定码错误次数过多，请{minutes}分钟后再试。"
BIND_TAKEN = "这个微信号已绑定工作人员{name}，不能再绑定其他账号。如需更换，请联系管理员。"
BIND_INACTIVE = "这个工作人员账号已停用，不能绑定。请联系管理员。"
STAFF_NEED_NUMBER = "请写明工单编号，例如：{example}（编号或「我的工单」列表中的序号）。"
STAFF_NEED_NOTE = "请在工单编号后写明说明：{usage}。"
STAFF_NO_SUCH_INDEX = "「我的工单」列表中没有第 {index} 项，请先发送「我的工单」查看。"
STAFF_DONE = "工单 {number}：{before} → {after}。"
STAFF_REFUSED = "不能办理：{reason}"
STAFF_LIST_HEAD = "您的工单（最新在前）："
STAFF_LIST_ITEM = "{index}. {number}｜{category}｜{status}｜时限 {due}"
STAFF_LIST_EMPTY = "您目前没有待办的工单。"
STAFF_LIST_TAIL = "可回复：{commands}（N 为上面的序号）。"

STAFF_PART_DONE = "工单 {number} 本部门协办任务：{before} → {after}。"
STAFF_NO_DEPARTMENT = "协办指令供协办部门的联络员使用；您不属于任何部门。"
RATING_COMMENT_OR_NEW = "\n（已作为评价意见记录。如果这是一个新的问题，请再发送一次，我们将登记为新的诉求。）"
