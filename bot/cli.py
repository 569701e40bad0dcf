"""The `minyi` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import signal
import sys
import tomllib
from typing import Any, Sequence

from bot.settings import Settings, load_settings

log = logging.getLogger("minyi")


def _setup_logging(verbose: bool) -> None:
    from bot.logs import setup_logging
    from bot.settings import LogSettings

    try:
        log_settings = load_settings().log
    except (OSError, ValueError, tomllib.TOMLDecodeError):
        log_settings = LogSettings()  # main() loads the settings next and reports what is wrong
    setup_logging(log_settings, verbose=verbose)


# ---------------------------------------------------------------- serve

def _event_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    """uvloop (libuv) where it is installed, else asyncio's own loop: the same complaints
    cost ~10 % less CPU with uvloop (docs/benchmarks.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"
    return uvloop.new_event_loop(), "uvloop"


def _run_worker(settings: Settings, host: str, port: int, reuse_port: bool, index: int = 1,
                verbose: bool = False) -> None:
    """One serving process: `--workers N` spawns N of these (numbered from 1), a single
    worker runs in the `serve` process itself."""
    import os

    from aiohttp import web

    from bot.app import create_app
    from bot.httpbody import handler_options, raise_open_file_limit
    from bot.logs import setup_logging

    setup_logging(settings.log, worker=index, verbose=verbose)  # spawned processes start unconfigured
    soft, hard = raise_open_file_limit()
    loop, loop_name = _event_loop()
    log.info("worker %d started (pid %d, %s); open-file limit %d (hard %d)", index, os.getpid(), loop_name, soft, hard)
    web.run_app(create_app(settings), host=host, port=port, reuse_port=reuse_port, print=None, loop=loop,
                access_log=None, handle_signals=True, backlog=settings.server.backlog,
                **handler_options(settings.server))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.app import open_database

    host = args.host or settings.server.host
    port = args.port or settings.server.port
    # The address actually bound decides what is served (/sim only on a loopback bind).
    settings = settings.replace(server={"host": host, "port": str(port)})
    # Migrate and seed once, before any worker starts.
    db = asyncio.run(_prepare(settings, open_database))
    del db
    worker_settings = settings.replace(database={"auto_migrate": "false"}, demo={"load": "false"})
    mode = "离线模式（外发消息写入 outbox）" if settings.wechat.offline else "在线模式"
    print(f"minyi 已启动：http://{host}:{port}  {mode}  数据库：{_masked(settings.database_url)}", flush=True)
    if settings.simulator_enabled:
        print(f"微信模拟器：http://{host}:{port}/sim", flush=True)
    verbose = bool(getattr(args, "verbose", False))
    if args.workers <= 1:
        _run_worker(worker_settings, host, port, False, 1, verbose)
        return 0
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_run_worker, args=(worker_settings, host, port, True, index, verbose),
                           daemon=False)
               for index in range(1, args.workers + 1)]
    for worker in workers:
        worker.start()

    def _stop(signum: int, _frame: Any) -> None:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for worker in workers:
        worker.join()
    return 0


async def _prepare(settings: Settings, open_database: Any) -> None:
    db = await open_database(settings)
    await db.close()


def _masked(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


# ---------------------------------------------------------------- migrate / demo

def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from storage import migrate
    from storage.db import Database

    async def run() -> str | None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        try:
            await migrate.upgrade(db.engine, args.revision)
            return await migrate.current_revision(db.engine)
        finally:
            await db.close()

    revision = asyncio.run(run())
    print(f"数据库已迁移到版本 {revision}（{_masked(settings.database_url)}）")
    return 0


def cmd_demo_load(args: argparse.Namespace, settings: Settings) -> int:
    from storage import migrate, seed
    from storage.db import Database

    async def run() -> dict[str, int]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        try:
            if settings.auto_migrate:
                await migrate.upgrade(db.engine)
            async with db.transaction() as s:
                return await seed.load_demo(s, settings.config_dir)
        finally:
            await db.close()

    added = asyncio.run(run())
    print(f"已载入演示数据：网格节点 {added['areas']} 个，工作人员 {added['staff']} 名")
    if added["passwords"]:
        print(f"演示工作人员 {added['passwords']} 名的控制台密码已设为演示密码 {seed.DEMO_PASSWORD}（见 README，生产环境请勿使用）")
    return 0


# ---------------------------------------------------------------- wechat menu

def load_menu(settings: Settings) -> dict[str, Any]:
    with open(settings.config_dir / "menu.toml", "rb") as fh:
        menu = tomllib.load(fh)
    text = json.dumps(menu, ensure_ascii=False).replace("{public_url}", settings.server.base_url)
    return json.loads(text)


def cmd_menu_push(args: argparse.Namespace, settings: Settings) -> int:
    import aiohttp

    from bot.wechat.client import WeChatAPIError, WeChatClient
    from storage.outbox_rows import record_offline
    from storage.db import Database

    menu = load_menu(settings)
    if args.dry_run:
        print(json.dumps(menu, ensure_ascii=False, indent=2))
        return 0

    async def run() -> int:
        if settings.wechat.offline:
            db = Database(settings.database_url)
            try:
                async with db.transaction() as s:
                    record_offline(s, "menu", menu)
            finally:
                await db.close()
            print("未配置 AppSecret（离线模式）：菜单未发布，已记录到 outbox。")
            return 0
        async with aiohttp.ClientSession() as http:
            try:
                await WeChatClient(settings.wechat, http).create_menu(menu)
            except WeChatAPIError as exc:
                print(f"菜单发布失败：{exc}", file=sys.stderr)
                return 1
        print(f"菜单已发布：{len(menu.get('button', []))} 个一级菜单。")
        return 0

    return asyncio.run(run())


# ---------------------------------------------------------------- outbox

def cmd_outbox_list(args: argparse.Namespace, settings: Settings) -> int:
    from sqlmodel import col, select

    from bot.clock import format_local
    from storage.db import Database
    from storage.models import Outbox

    async def run() -> list[Outbox]:
        db = Database(settings.database_url)
        try:
            async with db.session() as s:
                statement = select(Outbox).order_by(col(Outbox.id).desc()).limit(args.limit)
                if args.status:
                    statement = statement.where(Outbox.status == args.status)
                return list((await s.exec(statement)).all())
        finally:
            await db.close()

    rows = asyncio.run(run())
    if not rows:
        print("outbox 为空。")
    for row in reversed(rows):
        content = (row.payload or {}).get("content") or json.dumps(row.payload, ensure_ascii=False)[:80]
        print(f"#{row.id} {format_local(row.created_at)} [{row.status}] {row.kind} → {row.openid or '-'}: "
              f"{str(content).replace(chr(10), ' / ')[:100]}")
    return 0


# ---------------------------------------------------------------- route

def cmd_route(args: argparse.Namespace, settings: Settings) -> int:
    """One report per stdin line → one JSON object per line (uses the demo grids' gazetteer)."""
    from bot.casework.areas import AreaDirectory
    from nlp.router import Router
    from storage.db import Database

    async def load_areas() -> AreaDirectory:
        from bot.app import open_database

        db: Database = await open_database(settings)
        try:
            async with db.session() as s:
                return await AreaDirectory.load(s)
        finally:
            await db.close()

    areas = asyncio.run(load_areas())
    router = Router.from_config(settings.config_dir, areas.locator, areas.gazetteer,
                                settings.routing.confidence_threshold, settings.models_dir)
    for line in sys.stdin:
        text = line.strip()
        if not text:
            continue
        r = router.route(text)
        print(json.dumps({
            "text": text, "category": r.category, "label": r.label if r.label is not None else r.category,
            "department": r.department, "lead_department": r.lead_department, "joint": r.joint,
            "co_departments": list(r.co_departments), "urgency": r.urgency, "appeal_type": r.appeal_type,
            "grid": r.area_code, "keywords": list(r.keywords), "tags": list(router.tags(r)), "confidence": r.confidence,
            "model_confidence": r.model_confidence, "decided_by": r.decided_by,
        }, ensure_ascii=False), flush=True)
    return 0


# ---------------------------------------------------------------- router train / evaluate

def _keyword_tagger(settings: Settings) -> Any:
    from nlp.tagger import KeywordTagger, new_tokenizer
    from nlp.taxonomy import Taxonomy

    taxonomy = Taxonomy.load(settings.config_dir / "taxonomy.toml")
    return KeywordTagger(taxonomy, new_tokenizer(settings.config_dir / "jieba_userdict.txt"))


def _seed(args: argparse.Namespace, taxonomy: Any, labels: list[str]) -> Any:
    """The taxonomy seed for labels that are category codes, unless --no-seed."""
    from nlp.learned import taxonomy_seed

    if args.no_seed:
        return None
    seed = taxonomy_seed(taxonomy, labels)
    if seed is None:
        print("标签不是分类代码：不加分类表种子")
    return seed


def _read_training_csv(path: str) -> tuple[list[str], list[str]] | None:
    from pathlib import Path

    from nlp.learned import read_examples

    try:
        texts, labels = read_examples(Path(path))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        print(f"无法读取训练数据：{exc}", file=sys.stderr)
        return None
    if not texts:
        print(f"{path} 中没有可用的样本（需要 text,label 两列）", file=sys.stderr)
        return None
    return texts, labels


def cmd_router_train(args: argparse.Namespace, settings: Settings) -> int:
    from collections import Counter

    from nlp.learned import LearnedModel, versions

    data = _read_training_csv(args.data)
    if data is None:
        return 1
    texts, labels = data
    counts = Counter(labels)
    print(f"读取 {args.data}：{len(texts)} 条样本，{len(counts)} 个标签", flush=True)
    tagger = _keyword_tagger(settings)
    seed = _seed(args, tagger.taxonomy, labels)
    if len(counts) < 2 and seed is None:  # the seed brings every category's examples
        print("至少需要两个不同的标签才能训练", file=sys.stderr)
        return 1

    def progress(message: str) -> None:
        print(message, flush=True)

    model = LearnedModel.train(texts, labels, tagger.tokenizer, cv_folds=args.folds, progress=progress,
                               source=str(args.data), seed=seed)
    path = model.save(settings.models_dir)
    print(f"模型已保存：{path}")
    print(f"样本 {model.meta['n_examples']} 条，标签 {len(model.labels)} 个，特征 {model.meta['n_features']} 个；"
          f"保留最近 {len(versions(settings.models_dir))} 个版本，current → {path.name}")
    if "cv_macro_f1" in model.meta:
        print(f"交叉验证（{model.meta['cv_folds']} 折）：准确率 {model.meta['cv_accuracy']:.3f}，"
              f"宏平均 F1 {model.meta['cv_macro_f1']:.3f}")
    return 0


def cmd_router_retrain(args: argparse.Namespace, settings: Settings) -> int:
    from bot.retrain import retrain
    from bot.ticket_cli import with_services

    async def run(services: Any) -> Any:
        return await retrain(services, min_examples=args.min_examples)

    print("收集工单标签并训练…", flush=True)
    result = asyncio.run(with_services(settings, run))
    if result.trained:
        print(f"已训练新模型：{result.path}（{result.n_examples} 条工单样本）")
    else:
        print(f"未训练：{result.reason}")
    return 0


def _pad(text: str, width: int, right: bool = False) -> str:
    """Pad to a display width (a CJK character takes two columns)."""
    import unicodedata

    shown = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    fill = " " * max(width - shown, 0)
    return fill + text if right else text + fill


def cmd_router_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from nlp.gazetteer import Gazetteer
    from nlp.geo import GridLocator
    from nlp.learned import Prediction, cross_validate, evaluate_on
    from nlp.router import Router

    data = _read_training_csv(args.data)
    if data is None:
        return 1
    texts, labels = data
    test = _read_training_csv(args.test) if args.test else None
    if args.test and test is None:
        return 1
    router = Router.from_config(settings.config_dir, GridLocator([]), Gazetteer([]),
                                settings.routing.confidence_threshold)
    tagger = router.tagger
    seed = _seed(args, tagger.taxonomy, labels)
    with_seed = f"另加分类表种子 {len(seed[0])} 条" if seed else ""
    if test is None:
        print(f"评估 {args.data}：{len(texts)} 条样本，{len(set(labels))} 个标签，{args.folds} 折分层交叉验证"
              + (f"；每折训练{with_seed}" if seed else ""), flush=True)
    else:
        print(f"用 {args.data} 的 {len(texts)} 条样本{('，' + with_seed) if seed else ''}训练，"
              f"在 {args.test} 的 {len(test[0])} 条样本上测试", flush=True)

    def progress(message: str) -> None:
        print(message, flush=True)

    def combined(text: str, prediction: Prediction) -> str:
        """What the router decides from the rules and this fold's model."""
        danger = router.urgency.detect(text).level == router.urgency.order[-1]
        return router.combine(tagger.tag(text), prediction.label, prediction.confidence, danger)[0]

    def keywords(text: str) -> str:
        return tagger.tag(text).category

    combine = combined
    if test is not None:
        result = evaluate_on((texts, labels), test, tagger.tokenizer, keywords, seed, combine)
        labels = test[1]
    else:
        result = cross_validate(texts, labels, args.folds, tagger.tokenizer, baseline=keywords,
                                progress=progress, seed=seed, combine=combine)
    if result is None:
        print("样本太少，无法分层交叉验证（每个标签至少 2 条，且至少 2 个标签）", file=sys.stderr)
        return 1
    if test is None and result["folds"] != args.folds:
        print(f"注意：最多的标签只有 {result['folds']} 条样本，折数降为 {result['folds']}")
    keyword = result["baseline"]
    print()
    print(f"{_pad('方法', 12)}{_pad('准确率', 10, right=True)}{_pad('宏平均F1', 12, right=True)}")
    rows = [("关键词规则", keyword), ("学习模型", result)]
    if "combined" in result:
        rows.append(("规则+模型", result["combined"]))  # what `minyi route` decides with a model
    for name, row in rows:
        print(f"{_pad(name, 12)}{row['accuracy']:>10.3f}{row['macro_f1']:>12.3f}")
    taxonomy = tagger.taxonomy
    if not set(labels) & set(taxonomy.categories):
        print("（标签不是分类代码：关键词规则的结果没有可比性）")
    for title, scores in (("学习模型", result["per_class_f1"]), ("关键词规则", keyword["per_class_f1"])):
        worst = sorted(scores.items(), key=lambda item: (item[1], item[0]))[:5]
        print(f"\n{title} F1 最低的 5 类：")
        for label, f1 in worst:
            name = taxonomy.categories[label].name if label in taxonomy.categories else ""
            print(f"  {label:<24}{f1:>6.3f}  {name}")
    return 0


# ---------------------------------------------------------------- config

# Settings keys whose values `config show` never prints.
SECRET_KEYS = frozenset({"secret", "aes_key", "token", "link_secret"})


def cmd_config_show(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    for section in dataclasses.fields(settings):
        value = getattr(settings, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        print(f"[{section.name}]")
        for key, item in dataclasses.asdict(value).items():
            shown = "***" if key in SECRET_KEYS and item else item
            if key == "url" and item:
                shown = _masked(str(item))
            print(f"{key} = {shown!r}")
    print(f"# 实际数据库：{_masked(settings.database_url)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minyi",
        description="民意：网格化社会治理微信公众号服务。配置见 config/minyi.toml，可用 MINYI_* 环境变量覆盖。")
    parser.add_argument("-v", "--verbose", action="store_true", help="输出调试日志")
    sub = parser.add_subparsers(dest="command", required=True, metavar="命令")

    serve = sub.add_parser("serve", help="启动服务（默认内置 SQLite、演示数据和 /sim 模拟器）")
    serve.add_argument("--host", help="监听地址（默认取配置 server.host）")
    serve.add_argument("--port", type=int, help="端口（默认取配置 server.port）")
    serve.add_argument("--workers", type=int, default=1, help="工作进程数（共享端口，默认 1）")
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="执行数据库迁移（PostgreSQL 部署时先运行一次）")
    mig.add_argument("--revision", default="head", help="目标版本（默认 head）")
    mig.set_defaults(func=cmd_migrate)

    demo = sub.add_parser("demo", help="演示数据")
    demo_sub = demo.add_subparsers(dest="demo_command", required=True, metavar="子命令")
    demo_sub.add_parser("load", help="载入演示网格和工作人员（已存在的跳过）",
                        description="把 config/demo/ 中的演示网格和工作人员写入数据库；已存在的跳过，可重复运行。"
                        ).set_defaults(func=cmd_demo_load)

    wechat = sub.add_parser("wechat", help="公众号管理")
    wechat_sub = wechat.add_subparsers(dest="wechat_command", required=True, metavar="子命令")
    menu = wechat_sub.add_parser("menu", help="自定义菜单")
    menu_sub = menu.add_subparsers(dest="menu_command", required=True, metavar="子命令")
    push = menu_sub.add_parser("push", help="按 config/menu.toml 发布菜单（离线模式写入 outbox）")
    push.add_argument("--dry-run", action="store_true", help="只打印将要发布的菜单 JSON")
    push.set_defaults(func=cmd_menu_push)

    outbox = sub.add_parser("outbox", help="查看外发消息记录")
    outbox_sub = outbox.add_subparsers(dest="outbox_command", required=True, metavar="子命令")
    listing = outbox_sub.add_parser("list", help="列出最近的外发记录")
    listing.add_argument("--status", choices=["pending", "sending", "sent", "deferred", "failed", "offline"],
                         help="只看某种状态")
    listing.add_argument("--limit", type=int, default=20, help="条数（默认 20）")
    listing.set_defaults(func=cmd_outbox_list)

    route = sub.add_parser("route", help="从标准输入逐行读取诉求，输出分类/部门/紧急程度/网格（JSON Lines）",
                           description="每行一条诉求，输出一行 JSON：category、label（有训练好的模型时为模型标签）、"
                                       "department、lead_department、co_departments、joint（联合派单）、urgency、"
                                       "grid、keywords（命中的分类关键词）、tags（TF-IDF 关键词）、confidence。"
                                       "数据目录中有训练好的模型时自动使用。")
    route.set_defaults(func=cmd_route)

    from bot.settings import CONFIG_DIR
    from bot.ticket_cli import add_ticket_commands
    from bot.casework.workflow import Workflow

    try:  # the actions for the help text; `act` checks the configured workflow itself
        actions = {action: t.label for action, t in Workflow.load(CONFIG_DIR / "workflow.toml").transitions.items()}
    except (OSError, ValueError, KeyError):
        actions = {}
    from bot.part_cli import add_part_commands
    from bot.rating_cli import add_rating_commands

    add_part_commands(add_ticket_commands(sub, actions))  # `minyi ticket part`
    add_rating_commands(sub)

    from bot.staff_cli import add_org_commands

    add_org_commands(sub)

    router = sub.add_parser("router", help="学习型分类模型：训练、评估、按工单重新训练（模型保存在数据目录 models/）")
    router_sub = router.add_subparsers(dest="router_command", required=True, metavar="子命令")
    train = router_sub.add_parser("train", help="用带标签的诉求训练新版本模型",
                                  description="读取 CSV（text,label 两列，标签可以是任意标签集），训练 TF-IDF（jieba 词 + "
                                              "字 1–2 元组）+ 线性 SVM 模型，保存到 数据目录/models/ 并设为 current；"
                                              "保留最近 5 个版本。标签是分类代码时，分类表的例句和关键词作为种子样本一并训练。")
    train.add_argument("--data", required=True, metavar="CSV", help="训练数据 CSV（text,label）")
    train.add_argument("--folds", type=int, default=5, help="先做 N 折交叉验证并记入模型元数据（0 = 不做，默认 5）")
    train.add_argument("--no-seed", action="store_true", help="不加分类表种子样本（只用 CSV 中的样本）")
    train.set_defaults(func=cmd_router_train)
    evaluate = router_sub.add_parser("evaluate", help="评估：关键词规则、学习模型、两者结合（k 折交叉验证，或 --test 另一测试集）",
                                     description="输出关键词规则（标签 = 分类代码）、学习模型和两者结合（路由实际的决定）"
                                                 "的准确率、宏平均 F1，以及 F1 最低的 5 个类别。不保存模型。")
    evaluate.add_argument("--data", required=True, metavar="CSV", help="评估数据 CSV（text,label）")
    evaluate.add_argument("--folds", type=int, default=5, help="折数（默认 5）")
    evaluate.add_argument("--test", metavar="CSV",
                          help="另一份测试集：用 --data 全部样本训练一次，在它上面评估（代替交叉验证）")
    evaluate.add_argument("--no-seed", action="store_true", help="学习模型只用各折的训练样本，不加分类表种子")
    evaluate.set_defaults(func=cmd_router_evaluate)
    retrain = router_sub.add_parser("retrain", help="现在就用工单数据重新训练（与每晚的定时任务相同）",
                                    description="从已办结工单和工作人员改派（改分类）的工单收集标签，加上分类表种子训练新版本；"
                                                "样本与当前模型相同则沿用。运行中的服务一分钟内换用新模型。")
    retrain.add_argument("--min-examples", type=int, help="至少多少条工单样本才训练（默认取配置 routing.retrain_min_examples）")
    retrain.set_defaults(func=cmd_router_retrain)

    from bot.intent_cli import add_intent_commands

    add_intent_commands(sub)

    from bot.sla_cli import add_sla_commands

    add_sla_commands(sub)

    config = sub.add_parser("config", help="配置")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="子命令")
    config_sub.add_parser("show", help="显示生效的配置（密钥已隐藏）",
                          description="显示 config/minyi.toml、MINYI_CONFIG 文件和 MINYI_* 环境变量合并后的配置。"
                          ).set_defaults(func=cmd_config_show)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    settings = load_settings()
    try:
        return int(args.func(args, settings) or 0)
    except BrokenPipeError:  # `minyi staff list | head`: the reader has gone, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # 128 + SIGPIPE, as a shell reports a command the pipe closed on


if __name__ == "__main__":
    sys.exit(main())
