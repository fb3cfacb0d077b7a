import mxnet as mx
import numpy as np
import pytest

from mxgen.data.vocab import Vocab
from mxgen.errors import MXGenError
from mxgen.generation import Sampler, generate
from mxgen.models import CharRNN


@pytest.fixture(scope="module")
def vocab(nietzsche):
    return Vocab.from_text(nietzsche)


def _model(vocab, mode="lstm", layers=2):
    mx.random.seed(11)
    model = CharRNN(len(vocab), 16, 48, layers, dropout=0.3, mode=mode)
    model.initialize(mx.init.Xavier(magnitude=6))   # large weights: peaked, varied output
    model.hybridize(static_alloc=True)
    return model


@pytest.mark.parametrize("mode,layers", [("lstm", 1), ("lstm", 2), ("gru", 2), ("rnn_tanh", 1)])
def test_stateful_greedy_equals_window_and_beam1(vocab, mode, layers):
    model = _model(vocab, mode, layers)
    prompt = "The free spirit"
    stateful = generate(model, vocab, prompt, 40, temperature=0)
    # a window longer than the whole text re-reads everything: same as carrying state
    window = generate(model, vocab, prompt, 40, temperature=0, method="window", window=1000)
    beam1 = generate(model, vocab, prompt, 40, beam=1)
    assert stateful == window == beam1
    assert stateful[0].startswith(prompt) and len(stateful[0]) == len(prompt) + 40


def test_batch_rows_match_single_generation(vocab):
    model = _model(vocab)
    one = generate(model, vocab, "Whoever", 30, temperature=0)[0]
    many = generate(model, vocab, "Whoever", 30, temperature=0, num_samples=3)
    assert many == [one] * 3


def test_sampling_is_reproducible_under_a_seed(vocab):
    model = _model(vocab)
    kw = dict(temperature=0.9, top_k=10, top_p=0.95, num_samples=4)
    a = generate(model, vocab, "Truth", 60, seed=5, **kw)
    b = generate(model, vocab, "Truth", 60, seed=5, **kw)
    c = generate(model, vocab, "Truth", 60, seed=6, **kw)
    assert a == b and a != c
    assert len(set(a)) > 1                              # rows of a batch differ


def test_top_k_1_and_tiny_top_p_are_greedy(vocab):
    model = _model(vocab)
    greedy = generate(model, vocab, "Morality", 30, temperature=0)
    assert generate(model, vocab, "Morality", 30, top_k=1, seed=1) == greedy
    assert generate(model, vocab, "Morality", 30, top_p=1e-6, seed=1) == greedy


def test_beam_search_scores_at_least_greedy(vocab):
    model = _model(vocab)
    prompt, n = "The", 12

    def logprob(text):
        states = model.begin_state(1)
        ids = vocab.encode(text)
        logits, _ = model(mx.nd.array(ids[:-1, None]), *states)
        logp = mx.nd.log_softmax(logits, axis=-1).asnumpy()[:, 0]
        return sum(logp[t, ids[t + 1]] for t in range(len(prompt) - 1, len(ids) - 1))

    greedy = generate(model, vocab, prompt, n, temperature=0)[0]
    beams = generate(model, vocab, prompt, n, beam=6, num_samples=2)
    assert logprob(beams[0]) >= logprob(greedy) - 1e-4
    assert logprob(beams[0]) >= logprob(beams[1]) - 1e-4


def _draws(logits, num, **kw):
    sampler = Sampler(**kw)
    sampler.hybridize()
    mx.random.seed(3)
    batch = mx.nd.array(np.repeat(logits[None], num, axis=0))
    return np.bincount(sampler(batch).asnumpy().astype(int), minlength=len(logits))


def _chi_square_ok(counts, probs):
    expected = probs * counts.sum()
    live = expected > 0
    assert counts[~live].sum() == 0, "drew a token that should be impossible"
    stat = ((counts[live] - expected[live]) ** 2 / expected[live]).sum()
    dof = live.sum() - 1
    # 99.9% quantile of chi-square is below dof + 4.5 * sqrt(2 dof) + 10 for these sizes
    assert stat < dof + 4.5 * np.sqrt(2 * dof) + 10, (stat, dof)


def check_sampler_distributions(draws):
    """``draws(logits, n, **settings) -> counts``: plain, temperature, top-k and
    top-p draws each match their target distribution (chi-square, 99.9%)."""
    rng = np.random.RandomState(0)
    logits = rng.normal(0, 1.5, size=12).astype(np.float32)
    n = 40000

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    _chi_square_ok(draws(logits, n, temperature=1.0), softmax(logits))
    _chi_square_ok(draws(logits, n, temperature=0.5), softmax(logits / 0.5))
    top = np.argsort(-logits)[:4]
    masked = np.full_like(logits, -np.inf)
    masked[top] = logits[top]
    _chi_square_ok(draws(logits, n, top_k=4), softmax(masked))
    p = softmax(logits)
    order = np.argsort(-p)
    keep = order[:np.searchsorted(np.cumsum(p[order]), 0.7) + 1]
    nucleus = np.zeros_like(p)
    nucleus[keep] = p[keep] / p[keep].sum()
    _chi_square_ok(draws(logits, n, top_p=0.7), nucleus)
    return logits


def test_sampler_matches_target_distributions():
    check_sampler_distributions(_draws)


def test_bad_prompt_and_settings(vocab):
    model = _model(vocab)
    with pytest.raises(MXGenError, match="not in the vocabulary: '€', '♥'"):
        generate(model, vocab, "I ♥ €", 5)
    with pytest.raises(MXGenError, match="at least one character"):
        generate(model, vocab, "", 5)
    for kw, msg in [({"temperature": -1}, "temperature"), ({"top_k": -2}, "top_k"),
                    ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"),
                    ({"beam": 2, "num_samples": 3}, "beam width")]:
        with pytest.raises(MXGenError, match=msg):
            generate(model, vocab, "a", 5, **kw)
