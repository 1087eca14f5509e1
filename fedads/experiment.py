"""The facade researchers use: ``Experiment(config).run(out_dir) -> ExperimentResult``.

Data flows one way: world or party tables -> PSI alignment -> federated training (Flower or
in-process) and the non-federated references -> evaluation on held-out aligned users -> report.

The references (``ecommerce_only``, ``social_only``, ``centralized``) are trained in one process
by the *experimenter*, who in a simulation may see both tables; they use the same aligned users,
the same train / held-out split, the same encoders, architecture blocks, seed and batch order as
the federated model, so that the comparison is fair. The truth table of a synthetic world is read
only here, after scoring, to add the potential outcomes to the evaluation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedads._progress import SILENT, Progress
from fedads._threads import compute_threads
from fedads._validation import check_choice, check_in_range, check_positive_int, fail
from fedads.errors import FedadsWarning
from fedads.eval import EvalData, Evaluation, LiftUndefinedWarning, evaluate
from fedads.eval.campaign import CampaignSplit, campaign_block, campaign_split, combine_scores
from fedads.federation import BACKENDS, FederatedRun, FederationSettings, run_federated
from fedads.models import FeatureEncoder, build_model, predict_local, train_local
from fedads.models.baselines import (
    PRACTITIONER_MODELS,
    practitioner_references,
    train_practitioner_baselines,
)
from fedads.privacy.leakage import privacy_report
from fedads.serving import LOCAL_SERVING, LocalServingModel, fit_local_serving
from fedads.tables import PartyTable
from fedads.world import WorldConfig, generate_world

REFERENCE_MODELS: tuple[str, ...] = ("ecommerce_only", "social_only", "centralized")
DEFAULT_REFERENCES: tuple[str, ...] = (*REFERENCE_MODELS, "ecommerce_gbdt")
"""Trained by default: the matched references and the practitioner gradient boosting
(``ecommerce_net`` and ``social_gbdt`` of :mod:`fedads.models.baselines` on request)."""
_WHERE = "ExperimentConfig"
SERVING_FALLBACKS: tuple[str, ...] = ("local", "error")
"""``ExperimentConfig.serving_fallback``: serve with the local model, or fail the run."""


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment, end to end.

    Attributes:
        world: synthetic world parameters (ignored when party tables are given).
        federation: protocol, split and alignment settings shared by both parties, including
            the one timeout (``federation.protocol.timeout_s``: seconds a party may take to
            answer one message, default 600).
        backend: ``"simulation"`` (Flower simulation engine, default), ``"deployment"`` or
            ``"inprocess"``.
        references: which non-federated models to train for comparison: the matched
            references ``ecommerce_only``, ``social_only``, ``centralized`` and the practitioner
            baselines ``ecommerce_gbdt`` (default), ``ecommerce_net``, ``social_gbdt``
            (docs/evaluation.md).
        budgets: targeting budgets, shares of held-out aligned users.
        headline_budget: the budget the headline lift is reported at (default 0.10).
        n_bootstrap: paired bootstrap resamples (default 1000).
        eval_seed: seed of the bootstrap and tie-breaking.
        campaign: also evaluate the whole campaign (docs/evaluation.md, "Campaign view"): the
            label party scores its training users too, distils the local serving model
            (:mod:`fedads.serving`, reported as ``local_serving``), and every held-out
            e-commerce user, aligned or not, is ranked in one budget against an e-commerce-only
            gradient boosting trained on all other e-commerce users (``report.json``'s
            ``campaign`` block). Off by default (docs/evaluation.md, "Should campaign be on by
            default?"): about 60% more CPU, and the label party then receives the final social
            embeddings of every aligned training user, not only of the held-out ones.
        local_serving_labels: with ``campaign``, the local serving model also fits the
            e-commerce training users outside the intersection on their own labels (soft
            targets where the federated model scored, labels elsewhere); default: distilled on
            the aligned training users only.
        serving_fallback: with ``campaign``, what happens when the social party fails while
            the held-out users are scored (after training): ``"local"`` (default) serves the
            users it left unscored with the local serving model, warns (:class:`FedadsWarning`)
            and lists them in the report (``campaign.serving``); ``"error"`` fails the run.
            Without ``campaign`` there is no local model and such a failure always fails.
        treatment: the e-commerce table's column saying who was shown the ad in a randomized
            campaign (synthetic worlds: ``"treated"``, with ``WorldConfig.holdout_share > 0``).
            Adds the uplift models and the uplift evaluation of every model
            (docs/evaluation.md, "Uplift"; ``report.json``'s ``uplift``). Off by default. The
            column is never a feature and never leaves the label party.
        control: the value of ``treatment`` that marks held-out users (None: 0/1, 0 = held out).
        uplift_federated: with ``treatment``, also train the federated uplift model (a second
            federated run on the class-transformed label, same alignment and split).
    """

    world: WorldConfig = field(default_factory=WorldConfig)
    federation: FederationSettings = field(default_factory=FederationSettings)
    backend: str = "simulation"
    references: tuple[str, ...] = DEFAULT_REFERENCES
    budgets: tuple[float, ...] = (0.01, 0.05, 0.10)
    headline_budget: float = 0.10
    n_bootstrap: int = 1000
    eval_seed: int = 0
    campaign: bool = False
    local_serving_labels: bool = False
    serving_fallback: str = "local"
    treatment: str | None = None
    control: str | int | float | None = None
    uplift_federated: bool = True

    def validate(self) -> ExperimentConfig:
        self.federation.validate()
        check_choice(_WHERE, "backend", self.backend, BACKENDS)
        check_choice(_WHERE, "serving_fallback", self.serving_fallback, SERVING_FALLBACKS)
        for name in self.references:
            check_choice(_WHERE, "references", name, (*REFERENCE_MODELS, *PRACTITIONER_MODELS))
        for budget in (*self.budgets, self.headline_budget):
            check_in_range(_WHERE, "budget", budget, 0.0, 1.0, low_inclusive=False)
        check_positive_int(_WHERE, "n_bootstrap", self.n_bootstrap)
        treatment = self.treatment
        if treatment is not None and (not isinstance(treatment, str) or not treatment):
            raise fail(_WHERE, f"treatment={self.treatment!r} is not a column name",
                       "give the treatment column's name, or None")  # fmt: skip
        return self

    def replace(self, **changes: Any) -> ExperimentConfig:
        return replace(self, **changes).validate()


@dataclass
class ExperimentResult:
    """What a run produced.

    Attributes:
        evaluation: metrics, targeting and lift (``fedads.eval.Evaluation``).
        federated: the federated run (job values, aligned rows, traffic).
        data_summary: row counts (social, ecommerce, aligned, held-out, not aligned).
        report_paths: files written, when an output folder was given.
        privacy: label leakage per attack, the defense and feature inference
            (:func:`fedads.privacy.leakage.privacy_report`; ``report.json``'s ``privacy``).
        campaign: with ``config.campaign``, the campaign evaluation (:class:`CampaignResult`).
        uplift: with ``config.treatment``, the uplift evaluation
            (:class:`fedads.eval.uplift.UpliftEvaluation`).
    """

    evaluation: Evaluation
    federated: FederatedRun
    data_summary: dict[str, Any]
    scores: pd.DataFrame
    report_paths: Any = None
    privacy: dict[str, Any] | None = None
    campaign: CampaignResult | None = None
    uplift: Any = None

    def headline(self) -> dict[str, Any]:
        """The headline lift per pool at the headline budget (see ``Evaluation.headline``)."""
        return self.evaluation.headline()

    def _repr_html_(self) -> str:
        """Jupyter display: row counts, run, headline lifts and metrics (fedads.report.html)."""
        from fedads.report.html import experiment_result_html

        return experiment_result_html(self)


class Experiment:
    """World or party tables -> federation -> references -> evaluation -> report.

    Build with :meth:`from_world` (synthetic) or :meth:`from_tables` (bring your own data).
    Nothing runs until :meth:`run`.
    """

    def __init__(
        self,
        config: ExperimentConfig | None = None,
        *,
        social: PartyTable | None = None,
        ecommerce: PartyTable | None = None,
        truth: pd.DataFrame | None = None,
    ) -> None:
        self.config = config or ExperimentConfig()
        self.social = social
        self.ecommerce = ecommerce
        self.truth = truth

    @classmethod
    def from_world(cls, config: ExperimentConfig | None = None) -> Experiment:
        """A synthetic-world experiment (the world is generated in :meth:`run`)."""
        return cls(config)

    @classmethod
    def from_tables(
        cls,
        social: PartyTable,
        ecommerce: PartyTable,
        config: ExperimentConfig | None = None,
        truth: pd.DataFrame | None = None,
    ) -> Experiment:
        """Your own party tables (see :func:`fedads.tables.load_party_table`)."""
        return cls(config, social=social, ecommerce=ecommerce, truth=truth)

    def run(
        self,
        out_dir: str | Path | None = None,
        *,
        verbose: bool = True,
        alignment: Any = None,
        resume_dir: str | Path | None = None,
        resume: bool = False,
    ) -> ExperimentResult:
        """Run everything; write the report to ``out_dir`` when given.

        ``alignment``: ``None`` runs the PSI; an earlier result over the same tables, or
        ``"clear"`` in a simulation, skips it (see :func:`fedads.federation.run_federated`).

        ``resume_dir``: make the federated training resumable: the parties' and the
        coordinator's per-epoch state is kept there while the run lasts and removed once it
        completed; ``resume=True`` continues the interrupted run whose state is there
        (``run_federated``, docs/protocol.md "Resuming").

        Training and scoring in this process use one torch / OpenMP / BLAS thread, as a Flower
        party in the simulation engine does; ``FEDADS_THREADS=N`` in the environment sets
        another number, ``0`` leaves the process's settings (:mod:`fedads._threads`). On the
        README example the scores were bit for bit the same either way
        (benchmarks/results/run_overhead.json); torch does not promise that for every shape.
        """
        config = self.config.validate()
        # One torch / OpenMP thread while training and scoring, restored on return
        # (fedads._threads: FEDADS_THREADS; the numbers do not depend on it).
        with compute_threads():
            result = self._run(
                config, out_dir, verbose=verbose, alignment=alignment,
                resume=(resume_dir, resume),
            )  # fmt: skip
        if resume_dir is not None:  # completed: nothing left to resume
            import shutil

            shutil.rmtree(resume_dir, ignore_errors=True)
        return result

    def _run(
        self,
        config: ExperimentConfig,
        out_dir: str | Path | None,
        *,
        verbose: bool,
        alignment: Any,
        resume: tuple[str | Path | None, bool] = (None, False),
    ) -> ExperimentResult:
        if out_dir is not None:
            from fedads.report.writer import check_out_dir

            # Before any training: a refused or unwritable report folder fails in seconds.
            check_out_dir("Experiment.run out_dir", out_dir)
        progress = Progress(verbose)
        social, ecommerce, truth = self.social, self.ecommerce, self.truth
        world_frame = None
        if social is None or ecommerce is None:
            progress(f"generating the synthetic world ({config.world.n_users} e-commerce users)")
            world = generate_world(config.world)
            social, ecommerce = world.party_tables()
            truth, world_frame = world.truth, world.ecommerce
        flags = None
        if config.treatment is not None:
            from fedads.models.uplift import take_treatment

            # The label party's campaign flag: off its features, kept for the uplift models.
            ecommerce, flags = take_treatment(
                ecommerce, config.treatment, config.control, frame=world_frame
            )
        settings = replace(config.federation, verbose=verbose)
        check_before_training(social, ecommerce, settings, config.headline_budget)
        progress(f"federated training ({config.backend}, {settings.protocol.mode} mode)")
        run = run_federated(
            social,
            ecommerce,
            settings,
            backend=config.backend,
            progress=progress,
            alignment=alignment,
            score_train=config.campaign,
            resume_dir=resume[0],
            resume=resume[1],
            serve_fallback=config.campaign and config.serving_fallback == "local",
        )
        train = np.asarray(run.values["train_positions"], dtype=np.int64)
        test = np.asarray(run.values["test_positions"], dtype=np.int64)
        scores = {"federated": np.asarray(run.values["scores"], dtype=np.float64)}
        scores.update(
            train_references(
                social,
                ecommerce,
                run.social_rows,
                run.ecommerce_rows,
                train,
                test,
                settings,
                tuple(k for k in config.references if k in REFERENCE_MODELS),
                progress=progress,
            )
        )
        practitioner = practitioner_references(
            social, ecommerce, run.social_rows, run.ecommerce_rows, train, test,
            settings.protocol, config.references, progress=progress,
        )  # fmt: skip
        scores.update(practitioner.scores)
        local_model = split = None
        if config.campaign:
            split = campaign_split(
                ecommerce.n_rows, run.ecommerce_rows, test, settings.test_share,
                settings.split_seed,
            )  # fmt: skip
            label_rows = None
            if config.local_serving_labels:
                # Training users outside the intersection (never a campaign held-out user).
                label_rows = np.setdiff1d(split.train_rows, run.ecommerce_rows)
            # The e-commerce side's own computation: its features and its private scores.
            local_model = fit_local_serving(
                ecommerce, run.ecommerce_rows[train], run.values["train_scores"],
                settings.protocol, label_rows=label_rows, progress=progress,
            )  # fmt: skip
            scores[LOCAL_SERVING] = local_model.predict_proba(ecommerce, run.ecommerce_rows[test])
            # Serving without the social party: the users it left unscored get the local score.
            scores["federated"] = served_scores(
                scores["federated"], scores[LOCAL_SERVING], run, ecommerce, progress
            )
        progress(
            f"evaluating {len(test)} held-out users ({config.n_bootstrap} bootstrap resamples)"
        )
        evaluation = evaluate_held_out(
            ecommerce, run.ecommerce_rows[test], scores, config, truth=truth, progress=progress,
            strongest_baseline=practitioner.strongest_ecommerce,
        )  # fmt: skip
        keys, data = evaluation.data.keys, evaluation.data
        n_aligned = int(run.values["n_aligned"])
        summary = {
            "social_rows": social.n_rows,
            "ecommerce_rows": ecommerce.n_rows,
            "aligned": n_aligned,
            "test_users": int(len(test)),
            "train_users": int(len(train)),
            "social_not_aligned": social.n_rows - n_aligned,
            "ecommerce_not_aligned": ecommerce.n_rows - n_aligned,
        }
        frame = pd.DataFrame({"key": keys, "label": data.label, **scores})
        # The harness (which knows the labels) turns the observers' attack scores into leak AUCs.
        privacy = privacy_report(run, social, ecommerce, settings.protocol, seed=config.eval_seed)
        result = ExperimentResult(evaluation, run, summary, frame, privacy=privacy)
        if flags is not None:
            from fedads.experiment_uplift import run_uplift

            result.uplift, uplift_scores = run_uplift(
                social, ecommerce, flags, run, scores, settings, config, truth=truth,
                progress=progress,
            )  # fmt: skip
            for name, values in uplift_scores.items():
                result.scores[name] = values
        if local_model is not None and split is not None:
            result.campaign = evaluate_campaign(
                social,
                ecommerce,
                run,
                local_model,
                config,
                truth=truth,
                progress=progress,
                aligned=evaluation,
                split=split,
            )
        if out_dir is not None:
            from fedads.report import write_report

            result.report_paths = write_report(
                out_dir,
                evaluation,
                summary,
                extra={**_extra(config, run), "practitioner": practitioner.to_dict()},
                key_column=ecommerce.key,
                privacy=privacy,
                campaign=None if result.campaign is None else result.campaign.block,
                uplift=result.uplift,
            )
            progress(f"report written to {out_dir}")
        return result


CAMPAIGN_BASELINE = "ecommerce_gbdt"
"""The campaign's e-commerce-only model: the practitioner gradient boosting, trained on every
e-commerce user outside the campaign's held-out population."""


@dataclass
class CampaignResult:
    """The campaign view (docs/evaluation.md, "Campaign view").

    Attributes:
        evaluation: :func:`fedads.eval.evaluate` over every held-out e-commerce user; model
            ``federated`` is the federated system (joint scores for aligned users, local
            serving scores for the others).
        split: the campaign's held-out and training e-commerce rows.
        local_model: the local serving model (:mod:`fedads.serving`).
        block: ``report.json``'s ``campaign`` block.
    """

    evaluation: Evaluation
    split: CampaignSplit
    local_model: LocalServingModel
    block: dict[str, Any]

    def headline(self) -> dict[str, float]:
        """``campaign.<name>`` for every key of the campaign evaluation's headline."""
        return {f"campaign.{k}": v for k, v in self.evaluation.headline().items()}


def evaluate_campaign(
    social: PartyTable,
    ecommerce: PartyTable,
    run: FederatedRun,
    local_model: LocalServingModel,
    config: ExperimentConfig,
    *,
    truth: pd.DataFrame | None = None,
    progress: Progress | None = None,
    aligned: Evaluation | None = None,
    split: CampaignSplit | None = None,
) -> CampaignResult:
    """Every held-out e-commerce user in one budget: the federated system against an
    e-commerce-only model trained on all other e-commerce users (both pools).

    ``aligned``: the aligned-only evaluation (with ``local_serving`` among its models); adds
    ``local_serving_kept_share``: the share of the federated model's AUC gain over
    ``ecommerce_only`` on held-out aligned users that the local serving model keeps.
    """
    settings = config.federation
    test = np.asarray(run.values["test_positions"], dtype=np.int64)
    if split is None:
        split = campaign_split(
            ecommerce.n_rows, run.ecommerce_rows, test, settings.test_share, settings.split_seed
        )
    n_test = split.test_rows.size
    protocol = settings.protocol
    # The practitioner gradient boosting holds out ecommerce_rows[test]: given the campaign's
    # held-out rows, it trains on every other e-commerce user (no held-out label is read).
    baseline = train_practitioner_baselines(
        social, ecommerce, np.zeros(n_test, np.int64), split.test_rows, np.zeros(0, np.int64),
        np.arange(n_test), (CAMPAIGN_BASELINE,), seed=protocol.seed, model_config=protocol.model,
        batch_size=protocol.batch_size, lr=protocol.lr, optimizer=protocol.optimizer,
        weight_decay=protocol.weight_decay, progress=progress or SILENT,
    )  # fmt: skip
    local = local_model.predict_proba(ecommerce, split.test_rows)
    joint = np.asarray(run.values["scores"], dtype=np.float64)
    fallback = ~np.isfinite(joint)  # aligned users the social party left unscored
    joint = np.where(fallback, local[split.aligned], joint)
    scores = {
        "federated": combine_scores(split.aligned, joint, local),
        CAMPAIGN_BASELINE: baseline.scores[CAMPAIGN_BASELINE],
        LOCAL_SERVING: local,
    }
    if progress is not None:
        progress(
            f"campaign: {n_test} held-out e-commerce users ({split.n_aligned} aligned), "
            f"{CAMPAIGN_BASELINE} trained on {split.train_rows.size}"
        )
    keys = ecommerce.keys()[split.test_rows]
    y0, y1 = _potential_outcomes(truth, keys, ecommerce.key)
    p0, p1 = _potential_outcomes(truth, keys, ecommerce.key, columns=("p0", "p1"))
    data = EvalData(
        label=ecommerce.labels(split.test_rows),
        is_existing_customer=ecommerce.existing_flags(split.test_rows),
        scores=scores, y0=y0, y1=y1, keys=keys, p0=p0, p1=p1, where="campaign evaluation",
    )  # fmt: skip
    evaluation = _evaluate_quietly(data, config, (CAMPAIGN_BASELINE, LOCAL_SERVING), progress)
    block = campaign_block(
        evaluation,
        split,
        baseline=CAMPAIGN_BASELINE,
        notes=(
            f"held out by the split rule of the federated run in each stratum (test_share "
            f"{settings.test_share:g}, split_seed {settings.split_seed}); {CAMPAIGN_BASELINE} "
            f"trained on the {split.train_rows.size} other e-commerce users; the local serving "
            f"model distilled on {local_model.n_distilled} aligned training users"
            + (
                f" and fitted on the labels of {local_model.n_labelled} unaligned ones"
                if local_model.n_labelled
                else ""
            )
            + (
                "; the federated model also trained on the unaligned training users "
                "(unaligned_training; compare it with ecommerce_gbdt, which sees them too, "
                "not with ecommerce_only, which does not)"
                if settings.unaligned_training
                else ""
            ),
        ),
    )
    block["serving"]["fallback"] = config.serving_fallback
    block["serving"]["fallback_users"] = int(fallback.sum())
    # Which users the local model served in place of the joint one (their own keys).
    block["serving"]["fallback_keys"] = [str(k) for k in keys[: split.n_aligned][fallback]]
    if "scoring_error" in run.values:
        block["serving"]["scoring_error"] = str(run.values["scoring_error"])
    if aligned is not None:
        block["local_serving_kept_share"] = kept_share(aligned)
    return CampaignResult(evaluation, split, local_model, block)


def served_scores(
    joint: np.ndarray,
    local: np.ndarray,
    run: FederatedRun,
    ecommerce: PartyTable,
    progress: Progress | None = None,
) -> np.ndarray:
    """``float64 [n_test]``: the joint model's held-out scores, the local serving model's where
    the joint model has none (the social party failed while they were scored,
    ``ExperimentConfig.serving_fallback="local"``); warns once with the count."""
    joint = np.asarray(joint, dtype=np.float64)
    fallback = ~np.isfinite(joint)
    if not fallback.any():
        return joint
    message = (
        f"the social party failed while the held-out users were scored "
        f"({run.values.get('scoring_error', 'no score')}); the local serving model scored "
        f"{int(fallback.sum())} of {fallback.size} held-out aligned users in its place "
        "(report.json campaign.serving lists them)"
    )
    warnings.warn(message, FedadsWarning, stacklevel=3)
    if progress is not None:
        progress(message)
    return np.where(fallback, np.asarray(local, dtype=np.float64), joint)


def kept_share(evaluation: Evaluation, reference: str = "ecommerce_only") -> dict[str, Any]:
    """How much of the federated AUC gain over ``reference`` the local serving model keeps.

    ``(AUC_local - AUC_ref) / (AUC_federated - AUC_ref)`` on the evaluated users, overall and
    among new customers (``None`` when a model is missing or the gain is not positive).
    """
    out: dict[str, Any] = {"reference": reference}
    for segment, name in (("overall", "auc"), ("new", "auc_new")):
        try:
            fed, local, ref = (
                evaluation.metrics[m][segment].auc for m in ("federated", LOCAL_SERVING, reference)
            )
        except KeyError:
            out[name] = None
            continue
        gain = fed - ref
        out[name] = (local - ref) / gain if np.isfinite(gain) and gain > 0 else None
        out[f"{name}_values"] = {"federated": fed, LOCAL_SERVING: local, reference: ref}
    return out


def check_before_training(
    social: PartyTable,
    ecommerce: PartyTable,
    settings: FederationSettings,
    headline_budget: float | None = None,
) -> int:
    """Every check the tables and the aligned set allow, before any training; returns the
    aligned count.

    The experimenter holds both tables (a simulation), so it can compute the aligned set in
    the clear here; the federated run still aligns by PSI. Raises InputError (one line) for:
    a key duplicated after the agreed normalisation; labels without a positive or without a
    negative (in the e-commerce table, then among the aligned training users); no or too few
    users in common for the split and the headline budget.
    """
    from fedads.align import aligned_order, normalize_keys

    where = "before training"
    labels = ecommerce.labels()
    # The label party knows this much before any alignment.
    _check_both_classes(where, labels, "the e-commerce table")
    norm = settings.normalization
    for table in (social, ecommerce):
        _check_unique_after_normalisation(where, table, norm)
    social_keys = normalize_keys(social.keys(), norm, party="social")
    ecommerce_keys = normalize_keys(ecommerce.keys(), norm, party="ecommerce")
    common, _, ecommerce_idx = np.intersect1d(
        social_keys, ecommerce_keys, assume_unique=True, return_indices=True
    )
    if common.size == 0:
        raise fail(
            where,
            f"no users in common between the social ({social.n_rows} keys) and e-commerce "
            f"({ecommerce.n_rows} keys) tables (key normalisation {norm.describe()})",
            "check that both use the same key column and identifier; if only the case differs, "
            "pass --key-lower (CLI) or FederationSettings(normalization=KeyNormalization("
            "lower=True))",
        )
    from fedads.federation import check_aligned_users, split_positions

    check_aligned_users(where, int(common.size), settings.test_share, headline_budget)
    aligned_rows = ecommerce_idx[aligned_order(common)]
    train, _ = split_positions(int(common.size), settings.test_share, settings.split_seed)
    _check_both_classes(where, labels[aligned_rows[train]], "the aligned training users")
    return int(common.size)


def _check_unique_after_normalisation(where: str, table: PartyTable, norm: Any) -> None:
    """Keys distinct in the file but equal after normalisation (e.g. ``"a"`` and ``" a "``):
    a hint the CLI user can act on (the PSI party's own message suggests changing the rule)."""
    keys = pd.Series(table.keys(), dtype=object)
    if norm.strip:
        keys = keys.str.strip()
    if norm.lower:
        keys = keys.str.lower()
    repeated = keys[keys.duplicated(keep=False)]
    if repeated.empty:
        return
    raw = pd.Series(table.keys(), dtype=object)[repeated.index]
    first = repeated.iloc[0]
    spellings = raw[repeated == first].tolist()[:3]
    rule = "surrounding spaces removed" + (", lower-cased (--key-lower)" if norm.lower else "")
    raise fail(
        where,
        f"the {table.party} table {table.source} has {repeated.nunique()} keys duplicated once "
        f"compared as the parties align them ({rule}), e.g. {first!r} <- {spellings!r}",
        f"keep one row per user in the {table.party} table",
    )


def _check_both_classes(where: str, labels: np.ndarray, whose: str) -> None:
    positives = int(np.count_nonzero(labels == 1))
    if positives == 0 or positives == labels.size:
        missing = "positive (label 1)" if positives == 0 else "negative (label 0)"
        raise fail(
            where,
            f"no {missing} among the {labels.size} users of {whose}; a model cannot learn "
            "from one class",
            "check the label column (--label) or bring users with both outcomes",
        )


def evaluate_held_out(
    ecommerce: PartyTable,
    rows: np.ndarray,
    scores: dict[str, np.ndarray],
    config: ExperimentConfig,
    *,
    truth: pd.DataFrame | None = None,
    progress: Progress | None = None,
    strongest_baseline: str | None = None,
) -> Evaluation:
    """Evaluate held-out users on the label holder's side.

    Args:
        ecommerce: the e-commerce table (labels, existing flag, keys).
        rows: ``int64 [n_test]`` its rows of the held-out users, in score order.
        scores: model name -> ``[n_test]`` probabilities.
        config: budgets, bootstrap size and seed.
        truth: a synthetic world's truth table; adds ``y0``/``y1`` and ``p0``/``p1`` (read only
            here, after scoring).
        strongest_baseline: the validation-picked strongest e-commerce baseline, if any.
    """
    keys = ecommerce.keys()[rows]
    y0, y1 = _potential_outcomes(truth, keys, ecommerce.key)
    p0, p1 = _potential_outcomes(truth, keys, ecommerce.key, columns=("p0", "p1"))
    data = EvalData(
        label=ecommerce.labels(rows),
        is_existing_customer=ecommerce.existing_flags(rows),
        scores=scores,
        y0=y0,
        y1=y1,
        keys=keys,
        p0=p0,
        p1=p1,
    )
    baselines = tuple(m for m in (*REFERENCE_MODELS, *PRACTITIONER_MODELS) if m in scores)
    return _evaluate_quietly(data, config, baselines, progress, strongest_baseline)


def _evaluate_quietly(
    data: EvalData,
    config: ExperimentConfig,
    baselines: tuple[str, ...],
    progress: Progress | None,
    strongest_baseline: str | None = None,
) -> Evaluation:
    """:func:`evaluate` with the experiment's budgets and seeds, its undefined-lift warnings
    folded into one summary line (:func:`_rewarn`)."""
    with warnings.catch_warnings(record=True) as caught:
        # Undefined lifts (a baseline with 0 conversions at a small budget) are expected on
        # small held-out sets; the report marks them n/a. One summary line instead of dozens.
        warnings.simplefilter("always", LiftUndefinedWarning)
        evaluation = evaluate(
            data,
            budgets=config.budgets,
            headline_budget=config.headline_budget,
            n_bootstrap=config.n_bootstrap,
            seed=config.eval_seed,
            baselines=baselines,
            strongest_baseline=strongest_baseline,
        )
    _rewarn(caught, progress)
    return evaluation


def train_references(
    social: PartyTable,
    ecommerce: PartyTable,
    social_rows: np.ndarray,
    ecommerce_rows: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    settings: FederationSettings,
    kinds: tuple[str, ...] = REFERENCE_MODELS,
    *,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Train the non-federated references on the aligned users; return held-out probabilities.

    Same aligned rows, split, encoders (fitted on train rows), architecture blocks, seed and
    batch order as the federated model (``settings.protocol``).
    """
    if len(social_rows) != len(ecommerce_rows):
        raise fail("train_references", "aligned row counts differ", "pass one PSI result's rows")
    inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    specs = {}
    for name, table, rows in (
        ("social", social, social_rows),
        ("ecommerce", ecommerce, ecommerce_rows),
    ):
        numeric = table.numeric_matrix(rows) if table.numeric_columns else None
        categorical = table.categorical_matrix(rows) if table.categorical_columns else None
        numeric = numeric if numeric is not None else np.zeros((len(rows), 0), np.float32)
        categorical = (
            categorical if categorical is not None else np.zeros((len(rows), 0), dtype=object)
        )
        encoder = FeatureEncoder().fit(numeric, categorical, train)
        inputs[name] = encoder.transform(numeric, categorical)
        specs[name] = encoder.spec
    labels = ecommerce.labels(ecommerce_rows)
    protocol = settings.protocol
    out: dict[str, np.ndarray] = {}
    for kind in kinds:
        if progress is not None:
            progress(f"training reference model {kind!r} ({protocol.epochs} epochs)")
        model = build_model(kind, specs, protocol.model, protocol.seed)
        train_local(model, inputs, labels, train, protocol)
        out[kind] = np.asarray(predict_local(model, inputs, test), dtype=np.float64)
    return out


def _rewarn(caught: list[warnings.WarningMessage], progress: Progress | None) -> None:
    """Pass on every warning but undefined lifts, which are counted in one progress line."""
    undefined = 0
    for item in caught:
        if issubclass(item.category, LiftUndefinedWarning):
            undefined += 1
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    if undefined and progress is not None:
        progress(
            f"note: {undefined} lift estimates or bootstrap resamples had a baseline with 0 "
            "new-customer conversions (small budget or pool); the report marks them n/a"
        )


def _potential_outcomes(
    truth: pd.DataFrame | None,
    keys: np.ndarray,
    key_column: str,
    columns: tuple[str, str] = ("y0", "y1"),
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Y(0), Y(1) (or the true p0, p1) of the held-out users from a truth table (else None)."""
    if truth is None or not set(columns) <= set(truth.columns):
        return None, None
    column = key_column if key_column in truth.columns else "key"
    # get_indexer on the (unique) truth keys: one hash lookup per key, not a per-key .loc.
    where = pd.Index(truth[column]).get_indexer(keys)
    missing = where < 0
    if missing.any():
        raise fail(
            "truth table",
            f"{int(missing.sum())} held-out keys are missing",
            "pass the world's own truth table",
        )
    dtype = np.int8 if columns == ("y0", "y1") else np.float64
    return tuple(truth[name].to_numpy()[where].astype(dtype) for name in columns)  # type: ignore[return-value]


def _extra(config: ExperimentConfig, run: FederatedRun) -> dict[str, Any]:
    values = run.values
    return {
        "backend": run.backend,
        "elapsed_s": round(run.elapsed_s, 2),
        "traffic_bytes": run.traffic,
        "training": {
            key: np.asarray(value).tolist()
            for key, value in values.items()
            if key.startswith("epoch_")
        },
        "protocol": {
            "mode": config.federation.protocol.mode,
            "epochs": config.federation.protocol.epochs,
            "batch_size": config.federation.protocol.batch_size,
            "chunk_batches": config.federation.protocol.chunk_batches,
            "pipeline": config.federation.protocol.pipeline,
            "compression": config.federation.protocol.compression,
            "seed": config.federation.protocol.seed,
            "defense": config.federation.protocol.defense,
            "defense_strength": config.federation.protocol.defense_strength,
            "timeout_s": config.federation.protocol.timeout_s,
        },
        "world": config.world.to_dict() if hasattr(config.world, "to_dict") else None,
    }
