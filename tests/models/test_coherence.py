"""coherent_probs: a child is never ranked above its parent."""

import pytest
import torch

from echocare import coherent_probs
from echocare.ontology import load_ontology, random_ontology


@pytest.mark.parametrize("onto", [load_ontology(), random_ontology(300, depth=6, seed=7)], ids=["default", "deep"])
def test_child_never_above_parent(onto):
    logits = torch.randn(16, len(onto), generator=torch.Generator().manual_seed(0)) * 4
    probs = coherent_probs(logits, onto)
    assert probs.shape == logits.shape
    assert probs.min() >= 0 and probs.max() <= 1
    child = torch.tensor([i for i, p in enumerate(onto.parents) if p >= 0])
    parent = torch.tensor([onto.parents[i] for i in child.tolist()])
    assert torch.all(probs[:, child] <= probs[:, parent])
    # equals the loop definition sigmoid(min over self and ancestors)
    i = int(child[-1])
    chain = [i]
    while onto.parents[chain[-1]] >= 0:
        chain.append(onto.parents[chain[-1]])
    expected = torch.sigmoid(logits[:, chain].min(dim=1).values)
    torch.testing.assert_close(probs[:, i], expected)
    roots = [i for i, p in enumerate(onto.parents) if p < 0]
    torch.testing.assert_close(probs[:, roots], torch.sigmoid(logits[:, roots]))


def test_raw_sigmoid_would_be_incoherent():
    # the property is not vacuous: a confident child under an unlikely parent is capped
    onto = load_ontology()
    child = next(i for i, p in enumerate(onto.parents) if p >= 0)
    logits = torch.full((1, len(onto)), -5.0)
    logits[0, child] = 5.0
    probs = coherent_probs(logits, onto)
    assert probs[0, child] == pytest.approx(torch.sigmoid(torch.tensor(-5.0)).item())
