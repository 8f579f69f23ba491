"""StreamEngine: StreamDiffusion's stream batch with exact samplers, guidance, blending and the similarity filter."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from pipeline import samplers
from pipeline.conditioning import Conditioning
from pipeline.guidance import CFG_MODES, batch_size, guide, residual_noise, sampler_defaults
from pipeline.protocol import Denoiser, ModelDefaults
from pipeline.schedule import ScheduleConfig, SchedulerSettings, SlotTable, diagonal, table_for
from pipeline.similarity import SimilarityFilter
from pipeline.stream_noise import StreamNoise
from pipeline.stream_prompts import PromptEmbeddings
from pipeline.stream_state import EngineStats, StepBuffers

MODES = ("txt2img", "img2img", "feedback")


@dataclass(frozen=True)
class EngineConfig:
    """How the stream runs. None means "the model's default" (see `Denoiser.defaults`)."""

    size_px: tuple[int, int] | None = None  # (width, height) of the output frames, multiples of 8
    sampler: str | None = None  # turbo | lcm | ddim | dpmpp_2m
    steps: int | None = None  # denoising steps = frames in flight
    # ddim/dpmpp_2m timestep spacing: trailing | leading | linspace | logsnr | karras | model (the checkpoint's own
    # timestep_spacing). livekit defaults to trailing: with few steps it starts from pure noise (leading does not).
    spacing: str = "trailing"
    t_index_list: tuple[int, ...] | None = None  # lcm/turbo: indices into the 50-step LCM grid, e.g. (0, 16, 32, 45)
    cfg: str | None = None  # none | full | self | onetime (None: the sampler's default, see `StreamEngine.defaults`)
    mode: str = "txt2img"  # txt2img | img2img (Conditioning.image enters slot 0) | feedback (output fed back)
    similarity_threshold: float = 0.98  # image input: cosine similarity above which frames may be skipped
    max_skip_frames: int = 10  # image input: never skip more than this many frames in a row
    skip_static: bool = True  # txt2img: skip the model when nothing changed (the frame would be identical)
    filter_seed: int = 0  # seed of the stochastic similarity filter's coin


class StreamEngine:
    """N frames in flight at staggered timesteps; each `step()` is one model call and returns one finished frame."""

    def __init__(self, model: Denoiser, config: EngineConfig = EngineConfig()) -> None:
        self.model = model
        self.stats = EngineStats()
        self._prompts = PromptEmbeddings(model)
        self._rng = np.random.default_rng(config.filter_seed)
        # what the model takes besides the Denoiser protocol, looked up once (step() runs at the display rate)
        self._takes_phase, self._takes_layout, self._takes_reference = (
            hasattr(model, k) for k in ("motion_phase", "seed_layout", "reference"))
        self._take_control = getattr(model, "take_control", None)
        # one inference-mode context for every step: building it costs more than the guard itself (step is not
        # re-entrant: one thread steps an engine, see pipeline.worker)
        self._inference = torch.inference_mode()
        self.configure(config)

    # ---- configuration -------------------------------------------------------------------------------------
    def configure(self, config: EngineConfig) -> None:
        """Apply a configuration; a change of steps, sampler, spacing or size refills the stream (no garbage)."""
        d = sampler_defaults(self.model.defaults, config.sampler or self.model.defaults.sampler)
        size = config.size_px or d.size_px
        if size[0] % 8 or size[1] % 8 or min(size) <= 0:
            raise ValueError(f"size must be positive multiples of 8, got {size[0]}x{size[1]}")
        cfg = config.cfg or d.cfg
        if cfg not in CFG_MODES:
            raise ValueError(f"cfg must be one of {CFG_MODES}, got {cfg!r}")
        if config.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
        self.config = replace(config, size_px=tuple(size), sampler=config.sampler or d.sampler,
                              steps=config.steps or d.steps, cfg=cfg)
        self.defaults: ModelDefaults = d  # the model's defaults for this sampler (guidance: see sampler_defaults)
        self._strength = 1.0
        self._renoises = self.config.sampler in ("turbo", "lcm")  # slots re-noise with their frame's noise set
        self._negative = cfg in ("full", "onetime")  # guidance that evaluates the negative prompt
        settings = getattr(self.model, "scheduler_settings", None) or SchedulerSettings()
        self._schedule = ScheduleConfig(self.config.sampler, self.config.steps, self.config.spacing,
                                        self.config.t_index_list, settings=settings)
        self._set_table(table_for(self._schedule, self.model.alphas_cumprod))
        # txt2img, unguided, a solver that does not re-noise, no thresholding: `_advance_plain` runs every step
        self._plain = (config.mode == "txt2img" and cfg == "none" and not self._renoises
                       and self.table.threshold is None)
        self._frame_tables = [self.table] * self.slots  # the table each frame in flight entered with
        self._one_table = True  # every frame in flight entered with one table (the batch's rows are that table)
        self.latent_shape = tuple(self.model.latent_shape(self.config.size_px))
        n = self.slots
        dev, dt = self.model.device, self.model.dtype
        self._noises = StreamNoise(n, self.latent_shape, dev, dt, self._renoises)
        self._x = torch.zeros((n, *self.latent_shape), device=dev, dtype=dt)  # (N, C, h, w) slot latents
        self._u_prev = torch.zeros_like(self._x)  # (N, C, h, w) u = alpha x0 each frame had at its previous slot
        self._buffers = [StepBuffers.like(self._x) for _ in "ab"]  # what _advance writes, in turn
        self._turn = 0
        self._cond_batch: tuple = (None, 0, None)  # (emb, B, emb as a (B, L, D) batch)
        # (N, C, h, w) what residual CFG carries per frame: "self" the virtual residual noise, "onetime" the
        # negative prompt's x0 estimate from slot 0 (the negative noise at a slot is the residual against it)
        self._stock = torch.zeros_like(self._x)
        self._frame_noise: list[torch.Tensor | None] = [None] * n  # the noise set each frame entered with
        self._needs_fill = True
        self._static_key: tuple | None = None
        self._static_count = 0
        self._last_image: torch.Tensor | None = None
        self._last_latent: torch.Tensor | None = None
        self._similarity = SimilarityFilter(self.config.similarity_threshold, self.config.max_skip_frames, self._rng)

    def _set_table(self, table: SlotTable) -> None:
        """The table new frames enter with (frames in flight keep theirs, see `_rows`)."""
        self.table = table.to(self.model.device, self.model.dtype)
        self._all = torch.arange(table.slots, device=self.model.device)

    def _rows(self) -> SlotTable:
        """The batch's table: row i is row i of the table the frame in slot i entered with."""
        return self._frame_tables[0] if self._one_table else diagonal(self._frame_tables)

    def _shift_frames(self, noise: torch.Tensor | None) -> None:
        """A new frame entered slot 0 with the current table (and noise set, kept where slots re-noise)."""
        if not (self._one_table and self._frame_tables[0] is self.table):
            self._frame_tables = [self.table] + self._frame_tables[:-1]
            self._one_table = all(t is self.table for t in self._frame_tables)
        if self._renoises:
            self._frame_noise = [noise] + self._frame_noise[:-1]

    @property
    def slots(self) -> int:
        """Frames in flight (= denoising steps)."""
        return self.table.slots

    @property
    def latency_frames(self) -> int:
        """Steps until a conditioning change fully shows: the N-th frame returned after the change is the first
        that saw the new conditioning at every slot (the first frame after the change already shows part of it)."""
        return self.slots

    @property
    def batch_size(self) -> int:
        """Model batch size of one stream step."""
        return batch_size(self.config.cfg, self.slots)

    # ---- conditioning -> tensors ------------------------------------------------------------------------------
    def prompt_embedding(self, cond: Conditioning) -> torch.Tensor:
        """(L, D) blend of the weighted prompts that the stream conditions on (cached while the mix holds)."""
        return self._prompts.mix(cond)

    def _noise(self, cond: Conditioning) -> torch.Tensor:
        """(N, C, h, w): [0] the start noise of a new frame, [i] the re-noise noise of slot i (turbo, lcm; the other
        samplers get [0] alone)."""
        return self._noises.walked(cond.seeds, cond.noise_walk)

    def _image_latent(self, cond: Conditioning) -> torch.Tensor | None:
        """(1, C, h, w) clean latent of the input image (img2img) or of the last output (feedback)."""
        if self.config.mode == "feedback" and self._last_latent is not None:
            return self._last_latent
        if cond.image is None:
            return None
        img = cond.image if isinstance(cond.image, torch.Tensor) else self.prepare_image(cond.image)
        with torch.inference_mode():
            return self.model.encode_image(img)

    def prepare_image(self, image: np.ndarray) -> torch.Tensor:
        """Pre-processing: (H, W, 3) uint8 -> (1, 3, h, w) in [0, 1] at the engine's size, on the model's device.

        StreamWorker runs this on its pre-processing thread and passes the tensor as Conditioning.image."""
        img = torch.as_tensor(np.require(image, requirements=['C', 'W'])).to(self.model.device)  # read-only: copied
        img = img.permute(2, 0, 1)[None].to(self.model.dtype) / 255.0  # (1, 3, H, W)
        w, h = self.config.size_px
        if img.shape[-2:] != (h, w):
            img = torch.nn.functional.interpolate(img, size=(h, w), mode="bilinear", align_corners=False)
        return img

    def _update_strength(self, cond: Conditioning, image_latent: torch.Tensor | None) -> None:
        """New frames enter with the table of this strength (0 = the input itself, 1 = from pure noise)."""
        strength = 1.0 if image_latent is None or self.config.mode == "txt2img" else float(cond.strength)
        if strength != self._strength and self.config.t_index_list is None:
            self._strength = strength
            self._set_table(table_for(replace(self._schedule, strength=strength), self.model.alphas_cumprod))

    def _hand_over(self, cond: Conditioning, image_latent: torch.Tensor | None) -> tuple:
        """Hand the model what it takes besides the Denoiser protocol: the animation phase (cycles), the seed blend's
        layout and the input picture's latent (the builtin), the control picture and scale (a ControlNet model,
        pipeline.controlnet: every step, so every slot is conditioned). Returns what of the control the static key
        must see (a new picture or scale is never skipped)."""
        model = self.model
        if self._takes_phase:
            model.motion_phase = float(cond.motion_phase)
        if self._takes_layout:
            model.layout = model.seed_layout(cond.seeds, cond.noise_walk)
        if self._takes_reference:
            model.reference = image_latent
        take = self._take_control
        return () if take is None else take(cond.control_image, cond.control_mode, cond.control_scale,
                                             self.config.size_px)

    # ---- the stream --------------------------------------------------------------------------------------------
    def _predict(self, x: torch.Tensor, idx: torch.Tensor | None, emb: torch.Tensor, neg: torch.Tensor | None,
                 stock: torch.Tensor, cond: Conditioning, table: SlotTable,
                 into: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Guided scaled data prediction u = alpha x0 (`pipeline.samplers`) for latents x (B, C, h, w) at slots idx
        of table (None: every slot); one model call. Returns (u, stock): stock is the residual noise ("self") or the
        negative x0 estimate ("onetime") each frame carries. u is written into `into` when given (the stream's
        history)."""
        if idx is None:  # the table's timesteps are float32 already (SlotTable.to), its columns cached
            t, k = table.timesteps, table.columns
            alpha, sigma = k.alpha, k.sigma
        else:
            t, alpha, sigma = table.timesteps[idx].float(), table.alpha[idx], table.sigma[idx]
        pred, mode, b = self.model.prediction_type, self.config.cfg, x.shape[0]
        cond_b = self._cond_rows(emb, b)
        if mode == "none" or (mode == "self" and cond.guidance == 1.0):  # g = 1: eps = eps_cond exactly
            return samplers.to_scaled(self._call(x, t, cond_b), x, alpha, sigma, pred, into=into), stock
        if mode == "full":
            out = self._call(torch.cat([x, x]), torch.cat([t, t]), torch.cat([neg.expand(b, *neg.shape), cond_b]))
            eps_neg = samplers.to_eps(out[:b], x, alpha, sigma, pred)
            eps_cond = samplers.to_eps(out[b:], x, alpha, sigma, pred)
        elif mode == "self":
            eps_cond = samplers.to_eps(self._call(x, t, cond_b), x, alpha, sigma, pred)
            eps_neg = cond.delta * stock
        else:  # onetime: slot 0 evaluates the negative prompt once; its x0 travels with the frame
            first = (self._all if idx is None else idx) == 0
            k = int(first.sum())
            if k:
                xn, tn = x[first], t[first]
                out = self._call(torch.cat([xn, x]), torch.cat([tn, t]), torch.cat([neg.expand(k, *neg.shape), cond_b]))
                stock = stock.clone()
                stock[first] = samplers.to_x0(out[:k], xn, alpha[first], sigma[first], pred)
                out = out[k:]
            else:
                out = self._call(x, t, cond_b)
            eps_cond = samplers.to_eps(out, x, alpha, sigma, pred)
            eps_neg = cond.delta * residual_noise(x, stock, alpha, sigma)  # virtual negative noise at this slot
        eps = guide(eps_cond, eps_neg, cond.guidance)
        return torch.addcmul(x, eps, sigma.view(-1, 1, 1, 1), value=-1.0, out=into), stock

    def _cond_rows(self, emb: torch.Tensor, b: int) -> torch.Tensor:
        """(B, L, D) the prompt embedding as a batch, kept while the prompt mix holds."""
        emb_of, b_of, cond_b = self._cond_batch
        if emb_of is not emb or b_of != b:
            cond_b = emb.expand(b, *emb.shape)
            self._cond_batch = (emb, b, cond_b)
        return cond_b

    def _call(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.stats.model_calls += 1
        self.stats.batch_sizes.append(x.shape[0])
        return self.model(x, t, cond)

    def _entry(self, noise: torch.Tensor, image_latent: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(latent, stock noise) of the frame entering slot 0."""
        n0 = noise[0]
        if image_latent is None:
            return n0, n0  # txt2img starts from pure noise, as diffusers does
        a0, s0 = self.table.entry_alpha[0], self.table.entry_sigma[0]
        return a0 * image_latent[0] + s0 * n0, n0

    def _advance(self, emb: torch.Tensor, neg: torch.Tensor | None, image_latent: torch.Tensor | None,
                 cond: Conditioning) -> torch.Tensor:
        """One stream step: a model call for every slot, shift, a new frame into slot 0. Returns the output latent."""
        if self._plain:
            return self._advance_plain(emb, cond)
        x, rows = self._x, self._rows()
        self._turn ^= 1  # two buffer sets in turn: a step never writes the set it reads (the previous step's)
        buf = self._buffers[self._turn]
        u, stock = self._predict(x, None, emb, neg, self._stock, cond, rows, into=buf.u)  # (N, C, h, w) alpha x0
        u = samplers.boundary(u, x, rows, None)
        renoise = self._renoise() if self._renoises else None  # (N, C, h, w)
        x_next = samplers.advance(x, u, self._u_prev, renoise, rows.columns, rows.sampler, into=buf.advanced)
        if image_latent is None and not self._renoises:  # pure noise enters, no set to keep: walk straight into row 0
            noise, entry_stock = None, self._noises.walk_into(buf.entry, cond.seeds, cond.noise_walk)  # (1, C, h, w)
        else:
            noise = self._noise(cond)
            entry, entry_stock = self._entry(noise, image_latent)
            buf.entry.copy_(entry)
        if self.config.cfg == "self":
            x0 = u[:-1] / rows.columns.alpha[:-1]
            nxt = residual_noise(x_next[:-1], x0, rows.alpha_next[:-1], rows.sigma_next[:-1])
            self._stock = torch.cat([entry_stock.expand(1, *self.latent_shape), nxt])
        elif self.config.cfg == "onetime":
            self._stock = torch.cat([entry_stock.expand(1, *self.latent_shape), stock[:-1]])
        if u is not buf.u:  # boundary-conditioned: u is not in place yet
            buf.u.copy_(u)
        self._x, self._u_prev = buf.x, buf.u_prev
        self._shift_frames(noise)
        return buf.out

    def _advance_plain(self, emb: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """`_advance` where `_plain` holds (the default configuration): the same arithmetic, none of the branches it
        never takes (guidance, re-noise, image input, tables that differ per slot); it runs at the display rate."""
        x, table = self._x, self.table
        self._turn ^= 1
        buf = self._buffers[self._turn]
        k = table.columns
        eps = self._call(x, table.timesteps, self._cond_rows(emb, self.slots))  # (N, C, h, w)
        u = samplers.to_scaled(eps, x, k.alpha, k.sigma, self.model.prediction_type, into=buf.u)  # alpha x0
        samplers.advance(x, u, self._u_prev, None, k, table.sampler, into=buf.advanced)
        self._noises.walk_into(buf.entry, cond.seeds, cond.noise_walk)  # (1, C, h, w) pure noise enters slot 0
        self._x, self._u_prev = buf.x, buf.u_prev
        return buf.out

    def _renoise(self) -> torch.Tensor:
        """(N, C, h, w): row i is the re-noise of the frame in slot i, from the noise set it entered with."""
        sets = self._frame_noise
        if all(s is sets[0] for s in sets):
            return torch.cat([sets[0][1:], sets[0][:1]])
        rows = [samplers.renoise_of(s, i) for i, s in enumerate(sets)]
        return torch.stack([r if r is not None else torch.zeros_like(sets[0][0]) for r in rows])

    def _fill(self, emb: torch.Tensor, neg: torch.Tensor | None, noise: torch.Tensor,
              image_latent: torch.Tensor | None, cond: Conditioning) -> None:
        """Pre-fill: put a real frame into slot 0 and advance N-1 times, so the next output is a finished frame."""
        entry, entry_stock = self._entry(noise, image_latent)
        self._x = entry.expand(self.slots, *entry.shape).clone()
        self._u_prev = torch.zeros_like(self._x)
        self._stock = entry_stock.expand(self.slots, *entry.shape).clone()
        self._frame_tables, self._one_table = [self.table] * self.slots, True
        self._frame_noise = [noise] * self.slots
        for _ in range(self.slots - 1):
            before = self.stats.model_calls
            self._advance(emb, neg, image_latent, cond)
            self.stats.prefill_calls += self.stats.model_calls - before
        self._needs_fill = False

    def step(self, cond: Conditioning) -> torch.Tensor:
        """Advance the stream one step with this conditioning; returns the finished frame (3, H, W) in [0, 1]."""
        with self._inference:  # one context object, not the decorator's new one per call
            image_latent = None if self._plain else self._image_input(cond)
            control = self._hand_over(cond, image_latent)
            emb = self._prompts.mix(cond)
            neg = self._prompts.embed(cond.negative_prompt) if self._negative else None
            key = (cond.prompts, cond.negative_prompt, cond.prompt_blend, cond.seeds, cond.noise_walk, cond.guidance,
                   cond.delta, self._strength, cond.motion_phase, control)  # strength is 1.0 unless an image enters
            if self._needs_fill:
                self._fill(emb, neg, self._noise(cond), image_latent, cond)
                self._static_key, self._static_count = key, self.slots  # every slot now holds a frame of this key
            if self._skip(key, image_latent):
                self.stats.skipped += 1
                return self._last_image
            latent = self._advance(emb, neg, image_latent, cond)
            self._static_count += 1
            self._last_latent = latent
            self._last_image = self.model.decode(latent)[0]  # decode returns [0, 1] (the Denoiser protocol)
            self.stats.computed += 1
            return self._last_image

    def _image_input(self, cond: Conditioning) -> torch.Tensor | None:
        """The image latent of this step (None in txt2img), with the table of its strength set."""
        if self.config.mode == "txt2img":  # txt2img keeps strength 1 (configure sets it; only images move it)
            return None
        image_latent = self._image_latent(cond)
        self._update_strength(cond, image_latent)
        return image_latent

    def _skip(self, key: tuple, image_latent: torch.Tensor | None) -> bool:
        """Similarity filter (image input) or static skip (txt2img: every frame in flight saw only this key)."""
        if self._last_image is None:
            return False
        if image_latent is not None and self.config.mode == "img2img":
            if key != self._static_key:  # the knobs moved: a still input must not freeze the picture
                self._static_key = key
                self._similarity.computed(image_latent)
                return False
            return self._similarity.should_skip(image_latent)
        if self.config.mode != "txt2img" or not self.config.skip_static:
            return False
        if key != self._static_key:
            self._static_key, self._static_count = key, 0
        # after N+1 computed steps with one key, the frames in flight all entered and ran under it: outputs repeat
        return self._static_count > self.slots

    def warm_up(self) -> None:
        """One sequential frame of the default conditioning, so first-use work (the builtin model's pattern fields,
        the allocator, kernel selection) is done before a show's clock starts; the stream itself is untouched."""
        self.render(Conditioning())

    @torch.inference_mode()
    def render(self, cond: Conditioning) -> torch.Tensor:
        """One frame sampled sequentially (batch 1 per step, no stream): what a frame in the stream equals."""
        emb = self._prompts.mix(cond)
        neg = self._prompts.embed(cond.negative_prompt) if self._negative else None
        noise = self._noise(cond)
        image_latent = self._image_latent(cond) if self.config.mode == "img2img" else None
        self._hand_over(cond, image_latent)
        self._update_strength(cond, image_latent)
        x, stock = self._entry(noise, image_latent)
        x, stock = x[None], stock[None]
        u_prev = None
        for i in range(self.slots):
            idx, k = torch.tensor([i], device=self.model.device), self.table.slot_columns[i]
            u, stock = self._predict(x, idx, emb, neg, stock, cond, self.table)  # (1, C, h, w) alpha x0
            u = samplers.boundary(u, x, self.table, idx)
            nxt = samplers.renoise_of(noise[:, None], i)  # (1, C, h, w) or None: the stream's convention
            x_next = samplers.advance(x, u, u_prev, nxt, k, self.table.sampler)
            if i + 1 < self.slots and self.config.cfg == "self":
                stock = residual_noise(x_next, u / k.alpha, self.table.alpha_next[idx], self.table.sigma_next[idx])
            x, u_prev = x_next, u
        return self.model.decode(x)[0].clamp(0, 1)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float image in [0, 1] -> (H, W, 3) uint8 numpy array (the post-processing step)."""
    return (image.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
