#!/usr/bin/env python3
"""Choose chapter 10's PPO and DPO settings on validation questions, never on the test.

    python scripts/rlhf_validation_sweep.py --dpo-beta 0.1 0.3 1.0 --ppo-lr 5e-5 1e-4

Loads the assistant world's cached SFT model, reward model and preference pairs (training them
first where the cache lacks them: ``minigpt.world.pipeline``), then trains one model per setting
given, each differing from chapter 10's recipe (``CHAPTER``) in that one value, and scores it on
validation questions (``--questions``, seed 401) with chapter 10's measures: the annotator's mean
score (true reward), the win rate against the SFT model's answers, the KL from the SFT model, and
accuracy, all on answers sampled at temperature 1 (seed 1). Prints a markdown table for
docs/LOG.md. Sized by the profile (``MINIGPT_PROFILE``, cpu by default); ``--ppo-steps`` and
``--dpo-steps`` shorten a trial run.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MINIGPT_PROFILE", "cpu")

import torch

from minigpt.methods import dpo, ppo
from minigpt.models.gpt import GPT
from minigpt.train.config import TrainConfig
from minigpt.world import chat, comparisons, judging, pipeline, questions, recipes, scoring

# chapter 10's settings (notebooks/10_rlhf.ipynb); each row of the sweep changes one of them
CHAPTER = {"ppo_lr": 5e-5, "kl_coef": 0.2, "ppo_steps": 240, "dpo_beta": 0.3, "dpo_lr": 7e-5,
           "dpo_steps": 400}


def train_ppo(world: recipes.AssistantWorld, sft_model: GPT, rm, lr: float, kl_coef: float,
              steps: int) -> GPT:
    """PPO as chapter 10 runs it (adaptive KL, target 3, the value head at 3e-3)."""
    torch.manual_seed(0)
    prompts = scoring.PromptSampler(world, questions.make_questions(4000, seed=300, split="train"),
                                    batch_size=64)
    policy = ppo.PolicyWithValue(copy.deepcopy(sft_model))
    config = ppo.PPOConfig(batch_size=64, max_new_tokens=72, ppo_epochs=2, minibatch_size=32,
                           lr=lr, value_lr=3e-3, init_kl_coef=kl_coef, adaptive_kl=True,
                           target_kl=3.0, kl_horizon=10_000)
    ppo.PPOTrainer(policy, copy.deepcopy(sft_model), scoring.reward_scorer(rm, world), prompts,
                   world.tokenizer.end_id, config).train(steps)
    return policy.policy


def train_dpo(world: recipes.AssistantWorld, sft_model: GPT, beta: float, lr: float,
              steps: int) -> GPT:
    """Conservative DPO as chapter 10 runs it, on chapter 09's cached pairs."""
    torch.manual_seed(0)
    train, val = pipeline.preferences(world)
    model = copy.deepcopy(sft_model)
    config = TrainConfig(max_steps=steps, lr=lr, warmup_steps=min(20, steps // 5),
                         weight_decay=0.0, eval_interval=max(steps // 5, 1), eval_steps=5)
    dpo.train_dpo(model, copy.deepcopy(sft_model), comparisons.to_pairs(world, train), beta=beta,
                  label_smoothing=world.preferences.annotator_noise, config=config,
                  pad_id=world.tokenizer.end_id, batch_size=32,
                  val_pairs=comparisons.to_pairs(world, val))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ppo-lr", type=float, nargs="*", default=[])
    parser.add_argument("--kl-coef", type=float, nargs="*", default=[])
    parser.add_argument("--dpo-beta", type=float, nargs="*", default=[])
    parser.add_argument("--dpo-lr", type=float, nargs="*", default=[])
    parser.add_argument("--ppo-steps", type=int, default=CHAPTER["ppo_steps"])
    parser.add_argument("--dpo-steps", type=int, default=CHAPTER["dpo_steps"])
    parser.add_argument("--questions", type=int, default=400)
    args = parser.parse_args()

    world = recipes.AssistantWorld.build()
    sft_model, rm = pipeline.sft_model(world), pipeline.reward_model(world)
    validation = questions.make_questions(args.questions, seed=401, split="validation")
    sft_replies = chat.generate(sft_model, world, validation, temperature=1.0, seed=1)
    c = CHAPTER
    runs = ([(f"PPO lr {lr:g}", lambda lr=lr: train_ppo(world, sft_model, rm, lr, c["kl_coef"], args.ppo_steps))
             for lr in args.ppo_lr]
            + [(f"PPO beta {b:g}", lambda b=b: train_ppo(world, sft_model, rm, c["ppo_lr"], b, args.ppo_steps))
               for b in args.kl_coef]
            + [(f"DPO beta {b:g}", lambda b=b: train_dpo(world, sft_model, b, c["dpo_lr"], args.dpo_steps))
               for b in args.dpo_beta]
            + [(f"DPO lr {lr:g}", lambda lr=lr: train_dpo(world, sft_model, c["dpo_beta"], lr, args.dpo_steps))
               for lr in args.dpo_lr])
    rows = [("SFT", judging.true_reward(sft_replies), 0.5, 0.0,
             judging.evaluate(sft_replies)["all"]["accuracy"], 0.0)]
    for name, train in runs:
        start = time.perf_counter()
        model = train()
        replies = chat.generate(model, world, validation, temperature=1.0, seed=1)
        rows.append((name, judging.true_reward(replies), judging.win_rate(replies, sft_replies),
                     judging.kl_from(model, sft_model, world, replies),
                     judging.evaluate(replies)["all"]["accuracy"], time.perf_counter() - start))
        print(f"{name}: done in {rows[-1][-1]:.0f} s", flush=True)
    print(f"\n{len(validation)} validation questions (seed 401); chapter 10's settings: {CHAPTER}; "
          f"PPO {args.ppo_steps} steps, DPO {args.dpo_steps} steps\n")
    print("| setting | true reward | win vs SFT | KL (nats) | accuracy | seconds |")
    print("|---|---|---|---|---|---|")
    for name, true, win, kl, accuracy, seconds in rows:
        print(f"| {name} | {true:.2f} | {win:.0%} | {kl:.1f} | {accuracy:.0%} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
