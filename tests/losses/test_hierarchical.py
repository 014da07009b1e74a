"""Eq. (2)-(3): hierarchical loss against a slow loop reference, gradient routing, edge cases."""

import math

import pytest
import torch

from echocare.losses import hierarchical_loss
from echocare.models import HierarchyIndex
from echocare.ontology import load_ontology, random_ontology


def _ancestors_and_self(parents, i):
    chain = [i]
    while parents[chain[-1]] >= 0:
        chain.append(parents[chain[-1]])
    return chain


def _subtree(parents, i):
    return [j for j in range(len(parents)) if i in _ancestors_and_self(parents, j)]


def reference_loss(logits, targets, parents):
    """Obviously-correct eq. (2)-(3) with python loops over nodes."""
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        s = [1.0 / (1.0 + math.exp(-float(z))) for z in logits[b]]
        for i, t in enumerate(targets[b].tolist()):
            if t == -1:
                continue
            if t == 1:
                p = min(s[u] for u in _ancestors_and_self(parents, i))
                total += -math.log(p)
            else:
                p = max(s[u] for u in _subtree(parents, i))
                total += -math.log(1.0 - p)
            count += 1
    return total / max(count, 1)


def _random_targets(batch, n, generator):
    return torch.randint(-1, 2, (batch, n), generator=generator).float()


@pytest.mark.parametrize("onto", [load_ontology(), random_ontology(60, depth=6, seed=3)], ids=["default", "deep"])
def test_matches_loop_reference(onto):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, len(onto), generator=g, dtype=torch.float64) * 3
    targets = _random_targets(3, len(onto), g)
    got = hierarchical_loss(logits, targets, onto)
    assert got.item() == pytest.approx(reference_loss(logits, targets, onto.parents), rel=1e-5)
    # the model's buffer module is interchangeable with the ontology
    assert hierarchical_loss(logits, targets, HierarchyIndex(onto)).item() == pytest.approx(got.item(), rel=1e-6)


def test_gradient_reaches_only_the_argmin_ancestor():
    onto = random_ontology(40, depth=5, seed=1)
    leaf = max(range(len(onto)), key=lambda i: onto.levels[i])
    chain = _ancestors_and_self(onto.parents, leaf)
    assert len(chain) == 5
    logits = torch.randn(1, len(onto), generator=torch.Generator().manual_seed(2)).requires_grad_()
    targets = torch.full((1, len(onto)), -1.0)
    targets[0, leaf] = 1.0
    hierarchical_loss(logits, targets, onto).backward()
    argmin = min(chain, key=lambda u: logits[0, u].item())
    nonzero = torch.nonzero(logits.grad[0]).flatten().tolist()
    assert nonzero == [argmin]
    assert logits.grad[0, argmin] < 0  # raising that logit lowers the loss


def test_gradient_reaches_only_the_argmax_descendant():
    onto = random_ontology(40, depth=5, seed=1)
    root = next(i for i in range(len(onto)) if onto.parents[i] < 0 and len(_subtree(onto.parents, i)) > 3)
    subtree = _subtree(onto.parents, root)
    logits = torch.randn(1, len(onto), generator=torch.Generator().manual_seed(5)).requires_grad_()
    targets = torch.full((1, len(onto)), -1.0)
    targets[0, root] = 0.0
    hierarchical_loss(logits, targets, onto).backward()
    argmax = max(subtree, key=lambda u: logits[0, u].item())
    assert torch.nonzero(logits.grad[0]).flatten().tolist() == [argmax]
    assert logits.grad[0, argmax] > 0


def test_no_known_targets_gives_zero_with_grad():
    onto = load_ontology()
    logits = torch.randn(2, len(onto), requires_grad=True)
    loss = hierarchical_loss(logits, torch.full((2, len(onto)), -1.0), onto)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_extreme_logits_stay_finite():
    onto = load_ontology()
    logits = (torch.randn(2, len(onto)).sign() * 200.0).requires_grad_()
    targets = _random_targets(2, len(onto), torch.Generator().manual_seed(1))
    loss = hierarchical_loss(logits, targets, onto)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 1.0  # confidently wrong entries cost ~200 each
    assert torch.isfinite(logits.grad).all()


def test_bad_inputs_raise():
    onto = load_ontology()
    n = len(onto)
    with pytest.raises(ValueError, match="1, 0 or -1"):
        hierarchical_loss(torch.zeros(1, n), torch.full((1, n), 0.5), onto)
    with pytest.raises(ValueError, match="differ"):
        hierarchical_loss(torch.zeros(1, n), torch.zeros(2, n), onto)
    with pytest.raises(ValueError, match=f"{n} nodes"):
        hierarchical_loss(torch.zeros(1, n + 1), torch.zeros(1, n + 1), onto)
