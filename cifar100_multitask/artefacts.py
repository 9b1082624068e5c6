"""What a finished run leaves behind: curves, the three confusion matrices (fine grouped by
superclass, superclass grouped by group, group), one image per superclass, summary.json."""
from __future__ import annotations

import numpy as np

from common.data_source import short_source
from common.metrics import confusion
from common.models import count_parameters
from common.plots import plot_confusion, plot_curves, plot_image_grid
from common.rundir import RunDir
from cifar100_multitask.data import HIERARCHY, Pooled
from cifar100_multitask.evaluation import Evaluation
from cifar100_multitask.metrics import macro_accuracy, minority_recall
from cifar100_multitask.model import LEVELS, MultiTaskConfig, tree_distance
from cifar100_multitask.plots import plot_grouped_confusion


def write_artefacts(run: RunDir, model, config: MultiTaskConfig, final: Evaluation, args, pooled: Pooled,
                    train_idx: np.ndarray, train_counts: np.ndarray) -> dict:
    records = run.metrics()
    title = f"{'+'.join(config.heads)}, severity {args.severity}, split {args.split} ({short_source(pooled.source)})"
    plot_curves(records, {"loss": ["train_loss", "test_loss"],
                          "accuracy": [f"test_{h}_acc" for h in LEVELS] + ["train_fine_acc"],
                          "hierarchy consistency": ["test_consistency_fine_super", "test_consistency_super_group",
                                                    "test_consistency_all"]},
                run.file("curves.png"), title=title)
    matrices = {h: confusion(final.labels[h], final.predictions[h], HIERARCHY.sizes[h]) for h in LEVELS}
    acc = {h: final.record[f"test_{h}_acc"] for h in LEVELS}
    plot_grouped_confusion(matrices["fine"], HIERARCHY.fine_names, HIERARCHY.fine_to_super, HIERARCHY.super_names,
                           run.file("confusion_fine.png"),
                           title=f"fine labels grouped by superclass, accuracy {acc['fine']:.2%} (row-normalised)")
    plot_grouped_confusion(matrices["super"], HIERARCHY.super_names, HIERARCHY.super_to_group, HIERARCHY.group_names,
                           run.file("confusion_super.png"),
                           title=f"superclasses grouped by group, accuracy {acc['super']:.2%} (row-normalised)")
    plot_confusion(matrices["group"], HIERARCHY.group_names, run.file("confusion_group.png"), normalize=True,
                   title=f"groups, accuracy {acc['group']:.2%} (row-normalised)")
    first = [int(np.flatnonzero(HIERARCHY.fine_to_super[pooled.fine[train_idx]] == s)[0])
             for s in range(len(HIERARCHY.super_names))
             if np.any(HIERARCHY.fine_to_super[pooled.fine[train_idx]] == s)]
    plot_image_grid(pooled.images[train_idx[first]],
                    [HIERARCHY.fine_names[pooled.fine[train_idx[i]]] for i in first], run.file("samples.png"),
                    ncols=10, title="one training image per superclass (titled with its fine class)")
    last = records[-1]
    truth, predicted = final.labels["fine"], final.predictions["fine"]
    distance = tree_distance(HIERARCHY.parents, 0)[truth, predicted]            # (N,) 0 when right
    wrong = distance > 0
    recall = [float((predicted[truth == k] == k).mean()) if np.any(truth == k) else None
              for k in range(HIERARCHY.sizes["fine"])]
    summary = run.finish({
        **{k: v for k, v in final.record.items()},
        "train_loss": last["train_loss"],
        "fine_macro_acc": macro_accuracy(final.labels["fine"], final.predictions["fine"]),
        "fine_minority_recall": minority_recall(final.labels["fine"], final.predictions["fine"], train_counts),
        "fine_mistake_distance": float(distance[wrong].mean()) if wrong.any() else 0.0,
        "fine_mistakes_in_superclass": float((distance[wrong] == 1).mean()) if wrong.any() else 0.0,
        "fine_mistakes_across_groups": float((distance[wrong] == 3).mean()) if wrong.any() else 0.0,
        "fine_recall_per_class": recall, "train_counts": train_counts.tolist(),
        "heads": list(config.heads), "severity": args.severity, "sampler": args.sampler, "split": args.split,
        "imbalance": args.imbalance, "n_train": int(len(train_idx)), "n_test": int(len(final.labels["fine"])),
        "train_count_range": [int(train_counts.min()), int(train_counts.max())],
        "model": config.describe(), "model_config": config.to_dict(), "parameters": count_parameters(model),
        "confusion_super": matrices["super"].tolist(), "confusion_group": matrices["group"].tolist(),
    }, records)
    print(f"done: fine {acc['fine']:.2%}, super {acc['super']:.2%}, group {acc['group']:.2%}, "
          f"consistency {summary['test_consistency_all']:.2%}, test loss {summary['test_loss']:.3f} after "
          f"{summary['epochs']} epochs; run directory {run.path}")
    return summary
