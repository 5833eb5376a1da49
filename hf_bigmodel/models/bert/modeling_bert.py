"""The hf_bigmodel BERT encoder: BERT's post-norm Transformer with learned absolute positions and segment (token
type) embeddings, a pooler, and the heads of transformers' Bert* classes (pretraining MLM + NSP, masked LM, next
sentence prediction, sequence/token classification, extractive QA, multiple choice).

Standalone on purpose (transformers' single-model-file policy): `save_pretrained` copies this file and
`configuration_bert.py` next to the weights, so that `trust_remote_code=True` loads the model without hf_bigmodel
installed. Only `torch`, `transformers` (with its own dependencies `safetensors` and
`huggingface_hub`) and the sibling configuration may be imported here.

It computes exactly what transformers' `BertFor*` classes compute, faster:
* one fused q/k/v projection per layer (`attention.qkv_proj`, rows [q | k | v]) and the attention interface
  (sdpa by default);
* when training with MLM `labels`, the prediction head (transform + vocabulary decoder) and the loss run only at the
  labelled positions (typically 15% of the tokens) instead of at every position. In eval mode, or without labels,
  `prediction_logits` / `logits` cover every position, as in transformers.

Parameter names map one to one onto transformers' BERT (`bert.layers.N.attention.qkv_proj` <->
`bert.encoder.layer.N.attention.self.{query,key,value}`, ...; see hf_bigmodel/conversion/convert_bert.py).
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    NextSentencePredictorOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_bert import BigModelBertConfig

IGNORE_INDEX = -100


def _is_tracing() -> bool:
    """Inside torch.compile / torch.export / jit tracing the data-dependent input checks are skipped."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def check_ids_in_range(ids: torch.Tensor, limit: int, name: str, field: str, fix: str) -> None:
    """Raise a ValueError naming `name` if any id is negative or >= `limit` (an out-of-range embedding index
    otherwise fails deep inside torch with "index out of range in self", or a CUDA device-side assert)."""
    if _is_tracing() or ids.numel() == 0:
        return
    low, high = torch.aminmax(ids)
    low, high = int(low), int(high)
    if low < 0 or high >= limit:
        bad = low if low < 0 else high
        raise ValueError(f"`{name}` contains {bad}, outside [0, {field}={limit}). {fix}")


# Copied from hf_bigmodel.models.gpt.cpu_kernels_gpt.dropout_training
def dropout_training(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout: zero each element with probability `p` and scale the rest by 1 / (1 - p), as
    `nn.functional.dropout` does. On CPU the keep mask comes from `torch.rand` (one float32 per element, so `p` is
    exact to 2**-24) and a multiply, about 40% cheaper forward + backward than the `bernoulli_`-based kernel."""
    if p == 0.0:
        return x
    if x.device.type != "cpu":
        return nn.functional.dropout(x, p=p)
    keep = torch.rand(x.shape, device=x.device).ge_(p).mul_(1.0 / (1.0 - p))  # 0 or 1 / (1 - p)
    return x * keep.to(x.dtype)


# Copied from hf_bigmodel.models.gpt.cpu_kernels_gpt.BigModelGPTDropout with GPT->Bert
class BigModelBertDropout(nn.Dropout):
    """`nn.Dropout` computed by `dropout_training` (same distribution, cheaper on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout_training(x, self.p) if self.training else x


class BigModelBertEmbeddings(nn.Module):
    """Word + position + token type embeddings, LayerNorm, dropout."""

    def __init__(self, config: BigModelBertConfig):
        super().__init__()
        self.config = config
        # padding_idx: the pad row gets no gradient, as in BERT.
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = BigModelBertDropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        config = self.config
        seq_len = input_ids.shape[-1] if input_ids is not None else inputs_embeds.shape[-2]
        if position_ids is None and seq_len > config.max_position_embeddings:
            raise ValueError(
                f"Sequence length {seq_len} exceeds max_position_embeddings={config.max_position_embeddings}. "
                f"Truncate the input, e.g. tokenizer(..., truncation=True, max_length="
                f"{config.max_position_embeddings})."
            )
        if inputs_embeds is None:
            check_ids_in_range(
                input_ids,
                config.vocab_size,
                "input_ids",
                "vocab_size",
                "The tokenizer does not match the model: use the tokenizer saved with it, or resize the embeddings "
                "with model.resize_token_embeddings(len(tokenizer)).",
            )
            inputs_embeds = self.word_embeddings(input_ids)  # (batch, seq, hidden)
        if position_ids is None:
            # Positions 0..seq-1, shared by every row. Through the module, not a slice of its weight: accelerate's
            # offload hooks load a module's weights only when its own forward runs.
            positions = torch.arange(seq_len, device=inputs_embeds.device)
            embeddings = inputs_embeds + self.position_embeddings(positions)  # (seq, hidden) broadcast over rows
        else:
            check_ids_in_range(
                position_ids,
                config.max_position_embeddings,
                "position_ids",
                "max_position_embeddings",
                "Pass positions below max_position_embeddings (or none: they default to 0..seq-1).",
            )
            embeddings = inputs_embeds + self.position_embeddings(position_ids)
        if token_type_ids is None:
            segment_zero = torch.zeros(1, dtype=torch.long, device=inputs_embeds.device)  # every token in segment 0
            embeddings = embeddings + self.token_type_embeddings(segment_zero)
        else:
            check_ids_in_range(
                token_type_ids,
                config.type_vocab_size,
                "token_type_ids",
                "type_vocab_size",
                "Segment ids must be 0 (sentence A) or 1 (sentence B) for a standard BERT; set type_vocab_size "
                "to cover more segments.",
            )
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.layer_norm(embeddings))


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    # query: (batch, heads, q_len, head_dim); key/value: (batch, heads, kv_len, head_dim)
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, q_len, kv_len)
    if attention_mask is not None:  # additive float mask: 0 where allowed, dtype min elsewhere
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (batch, q_len, heads, head_dim)
    return attn_output, attn_weights


class BigModelBertAttention(nn.Module):
    """Bidirectional multi-head self-attention with one fused q/k/v projection."""

    def __init__(self, config: BigModelBertConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_key_value_groups = 1
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]  # (batch, seq)
        # (batch, seq, 3, heads, head_dim) -> 3 x (batch, heads, seq, head_dim)
        qkv = self.qkv_proj(hidden_states).view(*input_shape, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()  # (batch, seq, hidden)
        return self.o_proj(attn_output), attn_weights


class BigModelBertMLP(nn.Module):
    """The feed-forward block: `down(act(up(x)))`."""

    def __init__(self, config: BigModelBertConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(x)))


class BigModelBertLayer(GradientCheckpointingLayer):
    """Post-norm encoder layer: x = norm(x + attn(x)), then x = norm(x + mlp(x)) (BERT's order)."""

    def __init__(self, config: BigModelBertConfig, layer_idx: int):
        super().__init__()
        self.attention = BigModelBertAttention(config, layer_idx)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = BigModelBertMLP(config)
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = BigModelBertDropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attn_output, _ = self.attention(hidden_states, attention_mask, **kwargs)
        hidden_states = self.attention_norm(hidden_states + self.dropout(attn_output))
        hidden_states = self.mlp_norm(hidden_states + self.dropout(self.mlp(hidden_states)))
        return hidden_states  # (batch, seq, hidden)


class BigModelBertPooler(nn.Module):
    """tanh(dense(hidden state of the first token, [CLS])): the sentence representation NSP and classifiers use."""

    def __init__(self, config: BigModelBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))


class BigModelBertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BigModelBertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act_fn = ACT2FN[config.hidden_act]
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(self.act_fn(self.dense(hidden_states)))


class BigModelBertMLMHead(nn.Module):
    """Masked-LM head: transform, then the vocabulary decoder (weight tied to the word embeddings, own bias)."""

    def __init__(self, config: BigModelBertConfig):
        super().__init__()
        self.transform = BigModelBertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class BigModelBertPreTrainingHeads(BigModelBertMLMHead):
    """The MLM head plus the next-sentence classifier on the pooled output."""

    def __init__(self, config: BigModelBertConfig):
        super().__init__(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BigModelBertNSPHead(nn.Module):
    def __init__(self, config: BigModelBertConfig):
        super().__init__()
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.seq_relationship(pooled_output)


@dataclass
class BigModelBertForPreTrainingOutput(ModelOutput):
    r"""
    Output of `BigModelBertForPreTraining` (the fields of transformers' `BertForPreTrainingOutput`).

    loss: MLM loss + NSP loss (either alone when only its labels are given).
    prediction_logits: MLM scores, `(batch, seq, vocab_size)`. When training with `labels`, only the labelled
        positions are computed: `(number of labels != -100, vocab_size)`, rows in the order of
        `labels[labels != -100]`.
    seq_relationship_logits: NSP scores `(batch, 2)`: 0 = B follows A, 1 = B is random.
    """

    loss: torch.Tensor | None = None
    prediction_logits: torch.Tensor | None = None
    seq_relationship_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


# Copied from hf_bigmodel.models.gpt.modeling_gpt._unreadable_safetensors_files
def _unreadable_safetensors_files(name_or_path: str | os.PathLike, kwargs: dict) -> list[str]:
    """The safetensors files of a local folder or of a cached Hub repo whose header safetensors cannot read."""
    subfolder = kwargs.get("subfolder") or ""
    folder = os.path.join(str(name_or_path), subfolder)
    if os.path.isdir(folder):
        candidates = sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".safetensors"))
    else:

        def cached(filename: str) -> str | None:
            try:
                path = try_to_load_from_cache(
                    str(name_or_path),
                    f"{subfolder}/{filename}" if subfolder else filename,
                    cache_dir=kwargs.get("cache_dir"),
                    revision=kwargs.get("revision"),
                )
            except Exception:  # not a valid repo id: nothing to point at
                return None
            return path if isinstance(path, str) else None

        names = ["model.safetensors"]
        index = cached("model.safetensors.index.json")
        if index is not None:
            try:
                with open(index, encoding="utf-8") as f:
                    names += sorted(set(json.load(f).get("weight_map", {}).values()))
            except (OSError, ValueError):  # a damaged index: fall back to the single-file name
                pass
        candidates = [path for path in map(cached, names) if path is not None]
    bad_files = []
    for path in candidates:
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError):
            bad_files.append(path)
    return bad_files


class BigModelBertPreTrainedModel(PreTrainedModel):
    """Base class of the BERT family. Initialisation is transformers' default, which is BERT's: normal(0,
    initializer_range) weights, zero biases (the MLM decoder bias included), unit LayerNorm weights, zero pad row."""

    config: BigModelBertConfig
    base_model_prefix = "bert"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BigModelBertEmbeddings", "BigModelBertLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": BigModelBertLayer, "attentions": BigModelBertAttention}

    # Copied from hf_bigmodel.models.gpt.modeling_gpt.BigModelGPTPreTrainedModel.from_pretrained
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, except that a damaged safetensors file gives an error that names the
        file and says what to do (safetensors alone says e.g. "Error while deserializing header: header too large")."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except SafetensorError as error:
            bad_files = _unreadable_safetensors_files(pretrained_model_name_or_path, kwargs)
            if len(bad_files) == 1:
                what = f"The checkpoint file {bad_files[0]} is"
            elif bad_files:
                what = f"The checkpoint files {', '.join(bad_files)} are"
            else:
                what = f"A safetensors file of {pretrained_model_name_or_path} is"
            raise OSError(
                f"{what} corrupt or truncated ({error}), probably by an interrupted save or download. Re-save the "
                f"model with `save_pretrained`, or re-download it, e.g. `from_pretrained(..., force_download=True)`."
            ) from error

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """Valid inputs for every head: ids inside the vocabulary, both segments, one padded row."""
        vocab = self.config.vocab_size
        input_ids = torch.tensor([[2, 7, 6, 4, 3], [2, 5, 3, 8, 3]]) % vocab
        return {
            "input_ids": input_ids,
            "token_type_ids": torch.tensor([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]) % self.config.type_vocab_size,
            "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]),
        }


class BigModelBertModel(BigModelBertPreTrainedModel):
    """The BERT body: embeddings, the encoder layers and (unless `add_pooling_layer=False`) the pooler."""

    _input_embed_layer = "word_embeddings"

    def __init__(self, config: BigModelBertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BigModelBertEmbeddings(config)
        self.layers = nn.ModuleList([BigModelBertLayer(config, i) for i in range(config.num_hidden_layers)])
        self.pooler = BigModelBertPooler(config) if add_pooling_layer else None
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        input_ids: `(batch, seq)` token ids; or `inputs_embeds` `(batch, seq, hidden)`.
        attention_mask: `(batch, seq)`, 1 for tokens, 0 for padding (or a prepared 4-D mask).
        token_type_ids: `(batch, seq)` segment ids, 0 for sentence A and 1 for sentence B (default all 0).
        position_ids: `(batch, seq)` positions (default 0..seq-1).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        hidden_states = self.embeddings(
            input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds
        )
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, **kwargs)  # positional, for reentrant checkpointing
        pooled_output = self.pooler(hidden_states) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=hidden_states, pooler_output=pooled_output)


def labelled_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Cross-entropy in float32 over the entries with a label (not -100), summed and divided by `num_items_in_batch`
    when given (Trainer's count over the accumulated batch), else averaged: transformers' `ForMaskedLMLoss` /
    `ForTokenClassification` loss."""
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        labels.reshape(-1).to(logits.device),
        ignore_index=IGNORE_INDEX,
        reduction="sum" if num_items_in_batch is not None else "mean",
    )
    if num_items_in_batch is not None:
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(loss.device)
        loss = loss / num_items_in_batch
    return loss


class _MaskedLMMixin:
    """The MLM logits and loss shared by the pretraining and masked-LM heads."""

    def _mlm_logits_and_loss(
        self, sequence_output: torch.Tensor, labels: torch.Tensor | None, num_items_in_batch=None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if labels is None:
            return self.cls(sequence_output), None
        if not self.training:
            logits = self.cls(sequence_output)  # (batch, seq, vocab): metrics need every position
            return logits, labelled_cross_entropy(logits, labels, num_items_in_batch)
        # Training: only the labelled positions (~15%) go through the transform and the vocabulary decoder. The loss
        # and its gradients are the same as over all positions with -100 ignored.
        flat_labels = labels.reshape(-1).to(sequence_output.device)
        index = (flat_labels != IGNORE_INDEX).nonzero().squeeze(1)
        hidden = sequence_output.reshape(-1, sequence_output.shape[-1]).index_select(0, index)
        logits = self.cls(hidden)  # (labelled positions, vocab)
        return logits, labelled_cross_entropy(logits, flat_labels.index_select(0, index), num_items_in_batch)

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.decoder = new_embeddings


class BigModelBertForPreTraining(_MaskedLMMixin, BigModelBertPreTrainedModel):
    """BERT pretraining: masked language modelling + next sentence prediction."""

    _tied_weights_keys = {"cls.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: BigModelBertConfig):
        super().__init__(config)
        self.bert = BigModelBertModel(config)
        self.cls = BigModelBertPreTrainingHeads(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        next_sentence_label: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BigModelBertForPreTrainingOutput:
        r"""
        labels: `(batch, seq)` MLM targets: the original token id at masked positions, -100 elsewhere.
        next_sentence_label: `(batch,)` 0 if sentence B follows sentence A, 1 if it is random.

        The loss is MLM + NSP (or the one whose labels are given). With `num_items_in_batch` (passed by Trainer: the
        number of MLM labels in the whole accumulated batch) the MLM part is a sum divided by it, and the NSP mean is
        weighted by this micro-batch's share of MLM labels, so gradient accumulation adds up to the full-batch loss.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        prediction_logits, mlm_loss = self._mlm_logits_and_loss(outputs.last_hidden_state, labels, num_items_in_batch)
        seq_relationship_logits = self.cls.seq_relationship(outputs.pooler_output)  # (batch, 2)

        loss = mlm_loss
        if next_sentence_label is not None:
            nsp_loss = nn.functional.cross_entropy(
                seq_relationship_logits.float(), next_sentence_label.reshape(-1).to(seq_relationship_logits.device)
            )
            if num_items_in_batch is not None and labels is not None:
                nsp_loss = nsp_loss * ((labels != IGNORE_INDEX).sum().to(nsp_loss.device) / num_items_in_batch)
            loss = nsp_loss if loss is None else loss + nsp_loss
        return BigModelBertForPreTrainingOutput(
            loss=loss,
            prediction_logits=prediction_logits,
            seq_relationship_logits=seq_relationship_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class BigModelBertForMaskedLM(_MaskedLMMixin, BigModelBertPreTrainedModel):
    """Masked language modelling (the fill-mask pipeline)."""

    _tied_weights_keys = {"cls.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: BigModelBertConfig):
        super().__init__(config)
        self.bert = BigModelBertModel(config, add_pooling_layer=False)
        self.cls = BigModelBertMLMHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""
        labels: `(batch, seq)` targets at masked positions, -100 elsewhere. When training with labels, `logits` holds
            only the labelled positions: `(number of labels != -100, vocab_size)`.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits, loss = self._mlm_logits_and_loss(outputs.last_hidden_state, labels, num_items_in_batch)
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class BigModelBertForNextSentencePrediction(BigModelBertPreTrainedModel):
    """Next sentence prediction alone: does sentence B follow sentence A?"""

    def __init__(self, config: BigModelBertConfig):
        super().__init__(config)
        self.bert = BigModelBertModel(config)
        self.cls = BigModelBertNSPHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> NextSentencePredictorOutput:
        r"""
        labels: `(batch,)` 0 if sentence B follows sentence A, 1 if it is random. With `num_items_in_batch` (the
            number of examples of the accumulated batch) the loss is a sum divided by it.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.cls(outputs.pooler_output)  # (batch, 2)
        loss = labelled_cross_entropy(logits, labels, num_items_in_batch) if labels is not None else None
        return NextSentencePredictorOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def _classifier_dropout(config: BigModelBertConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


class BigModelBertForSequenceClassification(BigModelBertPreTrainedModel):
    """Sequence classification or regression from the pooled [CLS] representation."""

    # The loss is a mean per micro-batch (MSE/BCE cannot take `num_items_in_batch`): Trainer then divides by
    # gradient_accumulation_steps itself.
    accepts_loss_kwargs = False

    def __init__(self, config: BigModelBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BigModelBertModel(config)
        self.dropout = BigModelBertDropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        labels: `(batch,)` class ids (or floats for regression when `num_labels == 1`, `(batch, num_labels)` multi-hot
            floats for multi-label); `config.problem_type` is inferred from them as in transformers.
        """
        kwargs.pop("num_items_in_batch", None)
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (batch, num_labels)
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class BigModelBertForTokenClassification(BigModelBertPreTrainedModel):
    """One label per token (NER, tagging)."""

    def __init__(self, config: BigModelBertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BigModelBertModel(config, add_pooling_layer=False)
        self.dropout = BigModelBertDropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        r"""
        labels: `(batch, seq)` label ids, -100 where no loss is wanted (padding, sub-word continuations). With
            `num_items_in_batch` (Trainer) the loss is a sum divided by it, exact under gradient accumulation.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (batch, seq, num_labels)
        loss = labelled_cross_entropy(logits, labels, num_items_in_batch) if labels is not None else None
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class BigModelBertForQuestionAnswering(BigModelBertPreTrainedModel):
    """Extractive question answering: a start and an end score for every token."""

    def __init__(self, config: BigModelBertConfig):
        super().__init__(config)
        self.bert = BigModelBertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        r"""
        start_positions, end_positions: `(batch,)` token indices of the answer span. Positions outside the sequence
            are clamped and ignored, as in transformers. The loss is the mean of the start and end cross-entropies.
        """
        kwargs.pop("num_items_in_batch", None)
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        logits = self.qa_outputs(outputs.last_hidden_state)  # (batch, seq, 2)
        start_logits, end_logits = (part.squeeze(-1).contiguous() for part in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = self.loss_function(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class BigModelBertForMultipleChoice(BigModelBertPreTrainedModel):
    """Multiple choice (SWAG-style): one score per (context, choice) pair from the pooled output."""

    def __init__(self, config: BigModelBertConfig):
        super().__init__(config)
        self.bert = BigModelBertModel(config)
        self.dropout = BigModelBertDropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @property
    def dummy_inputs(self) -> dict[str, torch.Tensor]:
        """`(batch, num_choices, seq)` inputs: two examples of two choices."""
        return {name: torch.stack([tensor, tensor.flip(0)]) for name, tensor in super().dummy_inputs.items()}

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MultipleChoiceModelOutput:
        r"""
        input_ids, attention_mask, token_type_ids, position_ids: `(batch, num_choices, seq)`; inputs_embeds
            `(batch, num_choices, seq, hidden)`.
        labels: `(batch,)` index of the right choice. With `num_items_in_batch` (Trainer: the number of examples of
            the accumulated batch) the loss is a sum divided by it.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None or reference.dim() != (3 if input_ids is not None else 4):
            raise ValueError(
                "Multiple choice expects input_ids of shape (batch, num_choices, seq) (or inputs_embeds of shape "
                "(batch, num_choices, seq, hidden)): tokenize each (context, choice) pair and stack the choices."
            )
        num_choices = reference.shape[1]

        def flat(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return tensor.flatten(0, 1) if tensor is not None else None

        outputs = self.bert(
            flat(input_ids),
            attention_mask=flat(attention_mask),
            token_type_ids=flat(token_type_ids),
            position_ids=flat(position_ids),
            inputs_embeds=flat(inputs_embeds),
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)  # (batch, num_choices)
        loss = labelled_cross_entropy(logits, labels, num_items_in_batch) if labels is not None else None
        return MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "BigModelBertPreTrainedModel",
    "BigModelBertModel",
    "BigModelBertForPreTraining",
    "BigModelBertForPreTrainingOutput",
    "BigModelBertForMaskedLM",
    "BigModelBertForNextSentencePrediction",
    "BigModelBertForSequenceClassification",
    "BigModelBertForTokenClassification",
    "BigModelBertForQuestionAnswering",
    "BigModelBertForMultipleChoice",
]
