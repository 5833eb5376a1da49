"""Attention images in TensorBoard during training: `AttentionImagesCallback`, a `TrainerCallback`."""

from __future__ import annotations

import os

from transformers import TrainerCallback

from .attention import attention_maps


class AttentionImagesCallback(TrainerCallback):
    """At every logging step (`logging_steps`) and at the end of training, the attention of the model on `text`
    (and `target_text` for encoder-decoders) goes to TensorBoard: one image per layer and kind, tagged
    `attention/{self,decoder,cross}/layer_{i}`, its heads side by side as grey images (rows: queries, columns: keys;
    the raw weights in [0, 1], black = 0), so one can watch heads specialise as the model trains.

        trainer = Trainer(..., callbacks=[AttentionImagesCallback(tokenizer, "the movie was good")])

    The images go to `log_dir`, by default `{output_dir}/attention` (tensorboard --logdir output_dir shows them next
    to the losses). The model is switched to eager attention for the call and back (see `attention_maps`)."""

    def __init__(self, tokenizer, text: str, target_text: str | None = None, log_dir: str | None = None):
        self.tokenizer, self.text, self.target_text, self.log_dir = tokenizer, text, target_text, log_dir
        self.writer = None

    def log_attention(self, model, step: int, output_dir: str) -> None:
        """Write the attention images of `model` at `step` (what the Trainer events call)."""
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=self.log_dir or os.path.join(output_dir, "attention"))
        maps = attention_maps(model, self.text, self.tokenizer, target_text=self.target_text)
        kinds = {"self": maps.self_attentions, "decoder": maps.decoder_attentions, "cross": maps.cross_attentions}
        for kind, weights in kinds.items():
            if weights is None:
                continue
            for layer, heads in enumerate(weights):  # heads: (heads, queries, keys)
                self.writer.add_images(
                    f"attention/{kind}/layer_{layer}", heads.unsqueeze(1).clamp(0, 1), step, dataformats="NCHW"
                )
        self.writer.flush()

    def on_log(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None:
            self.log_attention(model, state.global_step, args.output_dir)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None:
            self.log_attention(model, state.global_step, args.output_dir)
        if self.writer is not None:
            self.writer.close()
            self.writer = None
