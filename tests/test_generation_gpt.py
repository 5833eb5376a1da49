"""Generation and forward-pass contracts of the GPT under transformers 5: caches, padding, beams, sampling,
inputs_embeds, the text-generation pipeline, attention implementations, output capture, length limits and the
gradient-accumulation-exact loss. Weights use initializer_range=0.5 so greedy continuations are not degenerate."""

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, pipeline

from hf_bigmodel.models import ARCHITECTURES
from hf_bigmodel.models.gpt import cpu_kernels_gpt
from hf_bigmodel.testing import pad_rows

CausalLM = ARCHITECTURES["gpt"].heads["causal-lm"]
PAD = 0
NEW_TOKENS = 8


@pytest.fixture
def make_lm(make_gpt_config):
    def make(variant: str = "gpt2", **overrides) -> torch.nn.Module:
        # eos_token_id=None: every row generates exactly NEW_TOKENS tokens, so rows can be compared one to one.
        overrides = {"initializer_range": 0.5, "eos_token_id": None, **overrides}
        return CausalLM(make_gpt_config(variant, **overrides)).eval()

    return make


def _prompts(lengths=(6, 3, 9)) -> list[torch.Tensor]:
    return [torch.randint(3, 256, (n,)) for n in lengths]


def _greedy(model, ids, mask=None, **kwargs) -> torch.Tensor:
    return model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False, **kwargs)


# --------------------------------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------------------------------


def test_greedy_is_not_degenerate(gpt_variant, make_lm):
    model = make_lm(gpt_variant)
    ids = _prompts((5,))[0][None]
    new = _greedy(model, ids)[0, 5:]
    assert len(new) == NEW_TOKENS and len(set(new.tolist())) > 2


def test_greedy_cache_equals_no_cache(gpt_variant, make_lm):
    model = make_lm(gpt_variant)
    ids, mask = pad_rows(_prompts(), PAD, side="left")
    cached = _greedy(model, ids, mask, use_cache=True)
    uncached = _greedy(model, ids, mask, use_cache=False)
    assert cached.shape == (3, ids.shape[1] + NEW_TOKENS)
    assert torch.equal(cached, uncached)


def test_static_cache_equals_dynamic(gpt_variant, make_lm):
    model = make_lm(gpt_variant)
    ids, mask = pad_rows(_prompts(), PAD, side="left")
    assert torch.equal(_greedy(model, ids, mask, cache_implementation="static"), _greedy(model, ids, mask))


def test_left_padded_rows_equal_each_row_alone(gpt_variant, make_lm):
    model = make_lm(gpt_variant)
    prompts = _prompts()
    ids, mask = pad_rows(prompts, PAD, side="left")
    batched = _greedy(model, ids, mask)
    for i, prompt in enumerate(prompts):
        alone = _greedy(model, prompt[None])
        pad = ids.shape[1] - len(prompt)
        assert torch.equal(batched[i, :pad], torch.full((pad,), PAD))
        assert torch.equal(batched[i, pad:], alone[0]), f"row {i}"


def test_beam_search_shape_and_cache(gpt_variant, make_lm):
    model = make_lm(gpt_variant)
    ids, mask = pad_rows(_prompts((5, 4)), PAD, side="left")
    kwargs = dict(num_beams=3, num_return_sequences=2, max_new_tokens=6, do_sample=False)
    cached = model.generate(ids, attention_mask=mask, use_cache=True, **kwargs)
    uncached = model.generate(ids, attention_mask=mask, use_cache=False, **kwargs)
    assert cached.shape == (4, ids.shape[1] + 6)
    assert torch.equal(cached, uncached)
    # The two returned beams of a prompt are different sequences.
    assert not torch.equal(cached[0], cached[1])


def test_sampling_with_seed_is_reproducible(gpt_variant, make_lm):
    model = make_lm(gpt_variant)
    ids = _prompts((4,))[0][None].repeat(4, 1)

    def sample(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return model.generate(ids, do_sample=True, top_k=50, temperature=1.5, max_new_tokens=NEW_TOKENS)

    first = sample(1)
    assert torch.equal(first, sample(1))
    assert not torch.equal(first, sample(2))
    assert len({tuple(row.tolist()) for row in first}) > 1  # rows of the same prompt diverge


def test_generate_from_inputs_embeds(gpt_variant, make_lm):
    model = make_lm(gpt_variant)
    ids, mask = pad_rows(_prompts((5, 7)), PAD, side="left")
    embeds = model.get_input_embeddings()(ids)
    from_embeds = _greedy(model, None, mask, inputs_embeds=embeds)
    from_ids = _greedy(model, ids, mask)
    assert from_embeds.shape == (2, NEW_TOKENS)  # only the new tokens
    assert torch.equal(from_embeds, from_ids[:, ids.shape[1] :])


def test_generate_returns_scores_hidden_states_and_attentions(make_gpt_config):
    config = make_gpt_config("llama", initializer_range=0.5, eos_token_id=None)
    model = CausalLM._from_config(config, attn_implementation="eager").eval()
    ids = _prompts((5,))[0][None]
    out = model.generate(
        ids,
        max_new_tokens=4,
        do_sample=False,
        return_dict_in_generate=True,
        output_scores=True,
        output_logits=True,
        output_hidden_states=True,
        output_attentions=True,
    )
    assert out.sequences.shape == (1, 9)
    assert len(out.scores) == len(out.logits) == len(out.hidden_states) == len(out.attentions) == 4
    assert torch.equal(torch.stack(out.logits, 1).argmax(-1), out.sequences[:, 5:])
    assert len(out.hidden_states[0]) == config.num_hidden_layers + 1
    assert out.hidden_states[0][0].shape == (1, 5, config.hidden_size)  # prompt step
    assert out.hidden_states[1][0].shape == (1, 1, config.hidden_size)  # then one token per step
    assert out.attentions[2][0].shape == (1, config.num_attention_heads, 1, 7)  # the new token attends to 7
    assert out.cache.get_seq_length() == 8


def test_assisted_and_prompt_lookup_equal_greedy(make_lm):
    model = make_lm("llama")
    prompt = torch.tensor([[5, 6, 7, 8, 5, 6, 7, 8, 5, 6]])
    greedy = _greedy(model, prompt)
    assert torch.equal(_greedy(model, prompt, assistant_model=model), greedy)
    assert torch.equal(_greedy(model, prompt, prompt_lookup_num_tokens=3), greedy)


# --------------------------------------------------------------------------------------------------------------------
# pipeline
# --------------------------------------------------------------------------------------------------------------------


def _char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character: a 32-token vocabulary (specials at the tiny preset's ids 0, 1, 2)."""
    vocab = {token: i for i, token in enumerate(["<pad>", "<s>", "</s>", "<unk>", *"abcdefghijklmnopqrstuvwxyz ."])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
    )


def test_text_generation_pipeline(tmp_path, make_lm):
    tokenizer = _char_tokenizer()
    model = make_lm("gpt2", vocab_size=len(tokenizer), eos_token_id=2)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path), trust_remote_code=False)
    assert type(generator.model) is CausalLM

    prompts = ["the cat sat on", "a big red dog ran on the"]
    kwargs = dict(max_new_tokens=5, do_sample=False)
    batched = generator(prompts, batch_size=2, **kwargs)
    for prompt, result in zip(prompts, batched):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        expected = tokenizer.decode(model.generate(ids, **kwargs)[0], skip_special_tokens=True)
        assert result[0]["generated_text"] == expected
        assert expected.startswith(prompt) and len(expected) > len(prompt)
        assert generator(prompt, **kwargs)[0]["generated_text"] == expected


# --------------------------------------------------------------------------------------------------------------------
# forward: attention implementations and outputs
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "implementation",
    ["sdpa", pytest.param("flex_attention", marks=pytest.mark.slow)],  # flex: ~1 min to compile
)
def test_attention_implementations_match_eager(implementation, gpt_variant, make_gpt_config):
    # One config per model: from_config / from_pretrained write the choice into config._attn_implementation.
    eager = CausalLM._from_config(make_gpt_config(gpt_variant, initializer_range=0.5), attn_implementation="eager")
    other = CausalLM._from_config(make_gpt_config(gpt_variant), attn_implementation=implementation)
    assert (eager.config._attn_implementation, other.config._attn_implementation) == ("eager", implementation)
    other.load_state_dict(eager.state_dict())
    ids, mask = pad_rows(_prompts(), PAD, side="left")
    with torch.no_grad():
        expected = eager.eval()(ids, attention_mask=mask).logits
        got = other.eval()(ids, attention_mask=mask).logits
    real = mask.bool()  # padded query positions are never used
    torch.testing.assert_close(got[real], expected[real], rtol=1e-4, atol=1e-4)


def test_output_attentions_with_eager(gpt_variant, make_gpt_config):
    config = make_gpt_config(gpt_variant)
    model = CausalLM._from_config(config, attn_implementation="eager").eval()
    ids, mask = pad_rows(_prompts(), PAD, side="left")
    out = model(ids, attention_mask=mask, output_attentions=True)
    assert len(out.attentions) == config.num_hidden_layers
    batch, seq = ids.shape
    real_queries = mask.bool()[:, None, :, None].expand(batch, config.num_attention_heads, seq, seq)
    pad_keys = ~mask.bool()[:, None, None, :]
    future = torch.ones(seq, seq, dtype=torch.bool).triu(diagonal=1)
    for attn in out.attentions:
        assert attn.shape == (batch, config.num_attention_heads, seq, seq)
        torch.testing.assert_close(attn.sum(-1), torch.ones(batch, config.num_attention_heads, seq))
        # Causal and padding-aware (for real query positions; pad queries are never used).
        assert torch.all(attn[real_queries & future] == 0)
        assert torch.all(attn[real_queries & pad_keys] == 0)
        assert torch.all(attn[real_queries & ~future & ~pad_keys] > 0)


def test_output_hidden_states_and_tuples(gpt_variant, make_lm):
    model = make_lm(gpt_variant)
    config = model.config
    ids = _prompts((6,))[0][None]
    out = model(ids, output_hidden_states=True)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert all(h.shape == (1, 6, config.hidden_size) for h in out.hidden_states)
    torch.testing.assert_close(
        out.hidden_states[0],
        model.model.embed_tokens(ids)
        + (model.model.embed_positions(torch.arange(6))[None] if gpt_variant == "gpt2" else 0),
    )
    # The last entry is the final-norm output, i.e. the body's last_hidden_state.
    torch.testing.assert_close(out.hidden_states[-1], model.model(ids).last_hidden_state)
    assert out.cache is not None and out.cache.get_seq_length() == 6

    as_tuple = model(ids, labels=ids, return_dict=False)
    assert isinstance(as_tuple, tuple)
    loss, logits = as_tuple[:2]
    torch.testing.assert_close(logits, model(ids).logits)
    assert loss.ndim == 0
    base_tuple = model.model(ids, return_dict=False, use_cache=False)
    assert isinstance(base_tuple, tuple) and base_tuple[0].shape == (1, 6, config.hidden_size)


def test_logits_to_keep(make_lm):
    model = make_lm("llama")
    ids = _prompts((7,))[0][None]
    full = model(ids).logits
    torch.testing.assert_close(model(ids, logits_to_keep=1).logits, full[:, -1:])


# --------------------------------------------------------------------------------------------------------------------
# decoding on several threads (fast_linear) and compilation
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def threads():
    """`threads(n)` sets torch's intra-op threads for the test; the previous count comes back afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("out_features", [96, 97])  # 97: rows beyond a multiple of the parts go through linear()
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("shape", [(24,), (1, 1, 24), (3, 5, 24)])
def test_few_rows_linear_equals_linear(out_features, bias, parts, shape):
    weight = torch.randn(out_features, 24)
    bias_tensor = torch.randn(out_features) if bias else None
    blocks = cpu_kernels_gpt.split_for_threads(weight, bias_tensor, parts)
    assert blocks.weight.data_ptr() == weight.data_ptr()  # views, no copy
    x = torch.randn(shape)
    expected = torch.nn.functional.linear(x, weight, bias_tensor)
    got = cpu_kernels_gpt.few_rows_linear(x, blocks)
    assert got.shape == expected.shape
    assert got.is_contiguous()  # as linear()'s: a strided result would send sdpa to its unfused math path
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts the batched product as it casts linear()
        expected, got = torch.nn.functional.linear(x, weight, bias_tensor), cpu_kernels_gpt.few_rows_linear(x, blocks)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got, expected, rtol=1e-2, atol=1e-2)


def test_linear_splits_only_few_row_float32_inference(threads, monkeypatch):
    calls = []
    split = cpu_kernels_gpt.few_rows_linear
    monkeypatch.setattr(
        cpu_kernels_gpt, "few_rows_linear", lambda x, blocks: calls.append(x.shape) or split(x, blocks)
    )
    layer = torch.nn.Linear(24, 48)

    def run(x):  # the model's layers are plain nn.Linear, called through fast_linear
        return cpu_kernels_gpt.fast_linear(layer, x)

    few, many = torch.randn(2, 3, 24), torch.randn(4, cpu_kernels_gpt.FEW_ROWS, 24)
    threads(2)
    with torch.no_grad():
        torch.testing.assert_close(run(few), torch.nn.functional.linear(few, layer.weight, layer.bias))
        run(many)
    assert calls == [few.shape]  # a training-sized input stays with linear()
    run(few).sum().backward()  # with gradients: linear(), whose backward autograd knows
    torch.testing.assert_close(layer.weight.grad, torch.ones(48, 3 * 2) @ few.reshape(-1, 24))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        run(few)  # bfloat16 products already use every thread in oneDNN
    with torch.no_grad():
        layer.to(torch.bfloat16)
        run(few.to(torch.bfloat16))
        layer.float()
    assert calls == [few.shape]
    with torch.no_grad(), pytest.raises(RuntimeError, match="cannot be multiplied"):
        run(torch.randn(2, 12))  # as many numbers as one row of 24, but the wrong width: linear()'s error
    threads(1)
    with torch.no_grad():
        torch.testing.assert_close(run(few), torch.nn.functional.linear(few, layer.weight, layer.bias))
    assert calls == [few.shape, few.shape]  # one thread still takes the batched product, in 2 blocks
    assert cpu_kernels_gpt.thread_blocks(layer).weight.shape[0] == 2


def test_thread_blocks_follow_weight_changes(threads, make_lm):
    """The cached views follow in-place updates and are rebuilt for new tensors, dtypes or thread counts."""
    layer = torch.nn.Linear(24, 48)

    def run(x):
        return cpu_kernels_gpt.fast_linear(layer, x)

    x = torch.randn(1, 24)
    threads(2)
    with torch.no_grad():
        run(x)
        layer.weight.mul_(2.0)  # an optimizer step: same storage
        torch.testing.assert_close(run(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
        layer.weight.data = torch.randn(48, 24)  # new storage
        torch.testing.assert_close(run(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
        layer.load_state_dict({"weight": torch.randn(48, 24), "bias": torch.randn(48)})
        torch.testing.assert_close(run(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
        layer.double()
        torch.testing.assert_close(run(x.double()), torch.nn.functional.linear(x.double(), layer.weight, layer.bias))
        layer.float()
        threads(3)  # 48 rows in 3 blocks now
        assert cpu_kernels_gpt.thread_blocks(layer).weight.shape[0] == 3
        torch.testing.assert_close(run(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
        # The model's `.to()` drops every layer's views of the old tensors.
        model = make_lm("gpt2").eval()
        model(torch.tensor([[1, 2, 3]]))
        assert any("_thread_blocks_cache" in m.__dict__ for m in model.modules())
        model.double()
        assert not any("_thread_blocks_cache" in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("thread_count", [1, 2, 3])  # 3: blocks with rows left over
def test_few_rows_decoding_equals_plain_linear_decoding(gpt_variant, make_lm, threads, monkeypatch, thread_count):
    """The decoding steps take the batched few-row path and give the tokens of plain `linear()` everywhere."""
    model = make_lm(gpt_variant)
    ids, mask = pad_rows(_prompts(), PAD, side="left")
    threads(thread_count)
    with monkeypatch.context() as patch:
        patch.setattr(cpu_kernels_gpt, "FEW_ROWS", 0)  # every product through linear()
        expected = _greedy(model, ids, mask)
    split_rows = []
    split = cpu_kernels_gpt.few_rows_linear
    monkeypatch.setattr(
        cpu_kernels_gpt, "few_rows_linear", lambda x, *rest: split_rows.append(x.shape) or split(x, *rest)
    )
    assert torch.equal(_greedy(model, ids, mask), expected)
    assert (3, 1, model.config.hidden_size) in split_rows  # the decoding steps (3 rows, 1 new token) were split


@pytest.mark.slow  # about 10 s of graph capture
def test_compiled_forward_and_compiled_static_generation_equal_eager(make_lm, threads):
    from transformers import CompileConfig

    threads(2)  # the threaded decoding path must step aside inside a compiled graph
    model = make_lm("llama")
    ids, mask = pad_rows(_prompts(), PAD, side="left")
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # graph capture without graph breaks
    with torch.no_grad():
        torch.testing.assert_close(compiled(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)
    compile_config = CompileConfig(fullgraph=True, backend="eager")
    compile_config._compile_all_devices = True  # generate compiles the decode step on accelerators only otherwise
    static = _greedy(model, ids, mask, cache_implementation="static", compile_config=compile_config)
    assert torch.equal(static, _greedy(model, ids, mask))


# --------------------------------------------------------------------------------------------------------------------
# length limits and loss
# --------------------------------------------------------------------------------------------------------------------


def test_too_long_input_raises(gpt_variant, make_lm):
    model = make_lm(gpt_variant, max_position_embeddings=16)
    with pytest.raises(ValueError, match=r"Sequence length 17 .*exceeds max_position_embeddings=16"):
        model(torch.randint(3, 256, (1, 17)))
    model(torch.randint(3, 256, (1, 16)))  # exactly the limit is fine


@pytest.mark.parametrize("cache_implementation", ["dynamic", "static"])
def test_generating_past_max_positions_raises(cache_implementation, gpt_variant, make_lm):
    model = make_lm(gpt_variant, max_position_embeddings=16)
    prompt = torch.randint(3, 256, (1, 12))
    with pytest.raises(ValueError, match=r"max_position_embeddings=16"):
        model.generate(prompt, max_new_tokens=8, do_sample=False, cache_implementation=cache_implementation)
    assert model.generate(prompt, max_new_tokens=4, do_sample=False).shape == (1, 16)


def test_loss_matches_manual_cross_entropy(gpt_variant, make_lm):
    model = make_lm(gpt_variant)
    ids = torch.randint(3, 256, (3, 10))
    labels = ids.clone()
    labels[0, :4] = -100  # e.g. a prompt that is not trained on
    logits = model(ids).logits
    shifted_logits, shifted_labels = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
    summed = torch.nn.functional.cross_entropy(shifted_logits, shifted_labels, ignore_index=-100, reduction="sum")
    num_items = int((shifted_labels != -100).sum())

    torch.testing.assert_close(model(ids, labels=labels).loss, summed / num_items)
    # Trainer with gradient accumulation passes the token count of the whole accumulated batch: the loss of this
    # micro-batch is its sum divided by that count, so the accumulated gradients equal the full-batch ones.
    total_items = 3 * num_items
    loss = model(ids, labels=labels, num_items_in_batch=torch.tensor(total_items)).loss
    torch.testing.assert_close(loss, summed / total_items)
