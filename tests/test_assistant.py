"""Supervised fine-tuning (chapter 08) and the assistant world's pipeline: the loss mask,
batches, the cached models, generation through the chat template and the evaluation."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from minigpt.methods import sft
from minigpt.models.gpt import GPT, GPTConfig
from minigpt.world import chat, comparisons, judging, pipeline, questions, recipes, scoring
from minigpt.world.annotator import Annotator

TINY = {"block_size": 128, "n_layer": 1, "n_head": 2, "n_embd": 32, "steps": 3, "batch_size": 4}


def tiny_world(sft: dict | None = None, preferences: dict | None = None,
               reward: dict | None = None) -> recipes.AssistantWorld:
    """A world with a one-layer model, 3 pre-training steps and a short SFT run."""
    return recipes.AssistantWorld.build(
        base=recipes.BaseRecipe(**TINY),
        sft=recipes.SFTRecipe(**{"examples": 300, "steps": 40, "batch_size": 16, **(sft or {})}),
        preferences=recipes.PreferenceRecipe.for_profile(**(preferences or {})),
        reward=recipes.RewardRecipe.for_profile(**(reward or {})))


@pytest.fixture(scope="module")
def world():
    return tiny_world()


def test_answer_mask_covers_answers_and_their_end_only():
    A, E = 100, 101  # assistant and end ids; 7 stands for a user turn's marker
    ids = [7, 1, 2, E, A, 3, 4, E, 7, 5, E, A, 6]
    assert sft.answer_mask(ids, A, E) == [False, False, False, False, False, True, True, True,
                                          False, False, False, False, True]
    assert sft.answer_mask([], A, E) == []


def test_render_masks_only_the_answer(world):
    tok = world.tokenizer
    ids, mask = sft.render(tok, "What is 2 + 3?", "5.")
    assert tok.decode(ids) == "<|user|>What is 2 + 3?<|end|><|assistant|>5.<|end|>"
    assert tok.decode([i for i, m in zip(ids, mask) if m]) == "5.<|end|>"
    prompt, pmask = sft.render(tok, "What is 2 + 3?")
    assert prompt[-1] == tok.assistant_id and not any(pmask) and ids[:len(prompt)] == prompt


def test_masked_loss_is_cross_entropy_over_the_mask():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]], dtype=torch.bool)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.masked_fill(~mask, -100).flatten(),
                               ignore_index=-100)
    assert torch.allclose(sft.masked_loss(logits, targets, mask), expected)
    assert not torch.allclose(sft.masked_loss(logits, targets, torch.ones_like(mask)), expected)
    with pytest.raises(ValueError, match="selects no token"):
        sft.masked_loss(logits, targets, torch.zeros_like(mask))


def test_masked_loss_wants_one_mask_flag_per_target():
    logits, targets = torch.zeros(2, 5, 7), torch.zeros(2, 5, dtype=torch.long)
    for mask in [torch.ones(2, 4, dtype=torch.bool), torch.ones(10, dtype=torch.bool)]:
        with pytest.raises(ValueError, match=r"mask must have the shape of targets, \(2, 5\), got"):
            sft.masked_loss(logits, targets, mask)


def test_sft_loss_counts_answer_tokens_only():
    """By hand: the cross-entropy of the masked positions alone. A loss over every token (the
    prompt included, which is what the model's own loss is) must not pass."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))
    torch.nn.init.normal_(model.tok_emb.weight, std=1.0)  # logits far from uniform
    x, y = torch.randint(0, 11, (2, 6)), torch.randint(0, 11, (2, 6))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 1, 1, 0, 0, 0]], dtype=torch.bool)
    logits, every_token = model(x, y)
    answers_only = F.cross_entropy(logits[mask], y[mask])
    assert torch.allclose(sft.sft_loss(model, (x, y, mask)), answers_only)
    assert not torch.allclose(answers_only, every_token, atol=1e-3)  # the test can tell them apart
    assert not torch.allclose(sft.sft_loss(model, (x, y, mask)), every_token, atol=1e-3)


def test_sft_batches_pad_right_and_mask_the_padding(world):
    tok = world.tokenizer
    rows = [sft.render(tok, q.prompt, a) for q, a in questions.instruction_data(20, seed=1)]
    get_batch = sft.sft_batches(rows, 8, 128, pad_id=tok.end_id, generator=torch.Generator().manual_seed(0))
    x, y, m = get_batch("train")
    assert x.shape == y.shape == m.shape and x.size(0) == 8
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert (m.sum(1) > 0).all()  # every row has answer tokens
    for r in range(8):  # the mask is the answer's tokens and nothing of the padding
        n = int((m[r]).sum())
        text = tok.decode(y[r][m[r]].tolist())
        assert text.endswith("<|end|>") and n == len(text) - len("<|end|>") + 1
    with pytest.raises(ValueError, match="block_size"):
        sft.sft_batches(rows, 8, 10, pad_id=tok.end_id)
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        sft.sft_batches(rows, 0, 128, pad_id=tok.end_id)


@pytest.mark.learned
def test_finetuning_lowers_the_answer_loss(world, learn_seed, figure):
    torch.manual_seed(learn_seed)
    model = GPT(world.config())
    recipe = dataclasses.replace(world.sft, lr=3e-3, seed=learn_seed)  # the examples and draws
    history = pipeline.finetune(model, world, recipe, progress=False)
    # Measured over seeds 0-4 and 1-2 threads (scripts/test_margins.py): the val loss drops by
    # 2.40-2.45
    drop = figure("val_loss_drop", history.val_loss[0] - history.val_loss[-1])
    assert drop > 0.5, history.val_loss


def test_generate_answers_every_question_in_order(world):
    torch.manual_seed(0)
    model = GPT(world.config())
    qs = questions.make_questions(12, seed=2)
    replies = chat.generate(model, world, qs, temperature=1.0, max_new_tokens=5)
    assert [r.question for r in replies] == qs
    assert all(len(r.text) <= 5 for r in replies)
    with pytest.raises(ValueError, match="no room"):
        chat.generate(model, world, [questions.Question("fact", "x" * 200, "a", "a", "a.")])


def test_evaluate_counts_correct_answers_and_format():
    q = questions.Question("arithmetic", "What is 23 + 45?", "68", "23 + 45", "23 + 45 = 68.")
    replies = [chat.Reply(q, "68.", True), chat.Reply(q, "23 + 45 = 69.", True),
               chat.Reply(q, "68.", False)]
    ev = judging.evaluate(replies)
    assert ev["arithmetic"]["accuracy"] == pytest.approx(2 / 3)
    assert ev["all"]["format"] == pytest.approx(2 / 3) and ev["all"]["n"] == 3


def test_models_are_cached_and_a_corrupt_cache_is_rebuilt(world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path))
    first = pipeline.base_model(world, progress=False)
    files = list((tmp_path / "assistant").glob("base-*.pt"))
    assert len(files) == 1
    again = pipeline.base_model(world, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    files[0].write_bytes(b"not a checkpoint")
    rebuilt = pipeline.base_model(world, progress=False)
    assert "training it again" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), rebuilt.state_dict().values()))


def test_prompt_sampler_gives_prompts_of_one_length_and_their_questions(world):
    qs = questions.make_questions(400, seed=4)
    sampler = scoring.PromptSampler(world, qs, batch_size=16, seed=0)
    for _ in range(5):
        batch = sampler()
        assert batch.shape[0] == 16
        for row in batch:
            q = sampler.question(row.tolist())
            assert sft.render(world.tokenizer, q.prompt)[0] == row.tolist()
    with pytest.raises(ValueError, match="no prompt length"):
        scoring.PromptSampler(world, qs[:3], batch_size=16)


def test_annotator_scorer_reads_the_masked_response(world):
    tok = world.tokenizer
    q = questions.Question("arithmetic", "What is 12 + 5?", "17", "12 + 5", "12 + 5 = 17.")
    sampler = scoring.PromptSampler(world, [q] * 2, batch_size=2)
    prompts = sampler()
    good = tok.encode("12 + 5 = 17.") + [tok.end_id, 5, 6]
    bad = tok.encode("18.") + [tok.end_id] * 20
    responses = torch.tensor([good, bad[:len(good)]])
    from minigpt.methods import logprobs
    mask = logprobs.response_mask(responses, tok.end_id)
    scores = scoring.annotator_scorer(world, sampler)(prompts, responses, mask)
    judge = Annotator(noise=0.0)
    assert scores.tolist() == [judge.score(q, "12 + 5 = 17."), judge.score(q, "18.")]


def test_win_rate_counts_ties_as_half():
    q = questions.Question("arithmetic", "What is 12 + 5?", "17", "12 + 5", "12 + 5 = 17.")
    a = [chat.Reply(q, "Sure! 12 + 5 = 17.", True), chat.Reply(q, "17.", True),
         chat.Reply(q, "18.", True)]
    b = [chat.Reply(q, "17.", True)] * 3
    assert judging.win_rate(a, b) == pytest.approx((1 + 0.5 + 0) / 3)
    assert judging.true_reward(b) == Annotator(noise=0).score(q, "17.")
    with pytest.raises(ValueError, match="same questions"):
        judging.win_rate(a, [chat.Reply(questions.make_questions(1)[0], "x", True)] * 3)


def test_kl_from_a_model_to_itself_is_zero_and_positive_to_another(world):
    torch.manual_seed(0)
    model, other = GPT(world.config()), GPT(world.config())
    replies = chat.generate(model, world, questions.make_questions(8, seed=1), temperature=1.0,
                                 max_new_tokens=10)
    assert judging.kl_from(model, model, world, replies) == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(3)
    assert judging.kl_from(model, other, world, replies) != pytest.approx(0.0, abs=1e-3)


def test_parse_question_reads_every_family_back():
    for q in questions.make_questions(100, seed=7):
        assert questions.parse_question(q.prompt) == q
    assert questions.parse_question("What is the meaning of life?") is None
    assert chat.find_question("What is 3 + 4?").value == "7"


def test_best_reply_of_n_keeps_the_answer_the_reward_model_prefers(world, monkeypatch):
    from minigpt.methods import reward

    torch.manual_seed(0)
    model = GPT(world.config())
    rm = reward.RewardModel.from_gpt(model)
    qs = questions.make_questions(6, seed=3)
    # a scorer that likes short answers: the best of 4 is never longer than a plain sample
    monkeypatch.setattr(scoring, "reward_scorer", lambda _rm, _w: (
        lambda p, r, m: -m.sum(1).float()))
    best = scoring.best_reply_of_n(model, rm, world, qs, n=4, max_new_tokens=12, seed=0)
    assert [r.question for r in best] == qs
    plain = chat.generate(model, world, qs, temperature=1.0, max_new_tokens=12, seed=0)
    assert sum(len(r.text) for r in best) < sum(len(r.text) for r in plain)


def test_reply_rewards_score_replies_as_ppo_scores_its_samples(world):
    from minigpt.methods import reward

    torch.manual_seed(0)
    rm = reward.RewardModel.from_gpt(GPT(world.config()))
    torch.nn.init.normal_(rm.head.weight)  # a head that is not zero, so rewards differ
    replies = chat.generate(GPT(world.config()), world, questions.make_questions(5, seed=2),
                            temperature=1.0, max_new_tokens=10, seed=0)
    prompts = [torch.tensor(sft.render(world.tokenizer, r.question.prompt)[0]) for r in replies]
    by_scorer = []
    for prompt, r in zip(prompts, replies):  # one at a time through PPO's score_fn
        answer = torch.tensor([chat.reply_ids(world, r)])
        by_scorer.append(scoring.reward_scorer(rm, world)(prompt[None], answer, torch.ones_like(answer)))
    rewards = scoring.reply_rewards(rm, world, replies)
    assert rewards.shape == (5,) and torch.allclose(rewards, torch.cat(by_scorer), atol=1e-5)
    assert rewards.std() > 0


def test_sft_batches_replay_pretraining_windows_in_training_batches_only(world):
    import numpy as np

    tok = world.tokenizer
    rows = [sft.render(tok, q.prompt, a) for q, a in questions.instruction_data(20, seed=1)]
    replay = np.arange(1000, dtype=np.int64) % tok.base.vocab_size
    get_batch = sft.sft_batches(rows, 8, 128, pad_id=tok.end_id, replay=replay, replay_share=0.25,
                                generator=torch.Generator().manual_seed(0))
    x, y, m, replay_rows = get_batch("train")
    assert x.shape[0] == 8 and x.shape[1] < max(len(ids) for ids, _ in rows)  # the chats' length
    assert m[-2:].all() and not m[:-2].all()  # 2 rows of pre-training text, trained on every token
    assert replay_rows.tolist() == [False] * 6 + [True] * 2
    assert all(int(y[r, 0]) - int(x[r, 0]) in (1, 1 - tok.base.vocab_size) for r in (6, 7))
    _, _, m_val, replay_val = get_batch("val")
    assert not m_val.all(dim=1).any() and not replay_val.any()  # validation: answers only
    # the loss: the replay gets a quarter (its share of rows), not its share of the tokens
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=16))
    logits, _ = model(x)
    answers = sft.masked_loss(logits[:6], y[:6], m[:6])
    old_text = torch.nn.functional.cross_entropy(logits[6:].flatten(0, 1), y[6:].flatten())
    assert torch.allclose(sft.sft_loss(model, (x, y, m, replay_rows)), 0.75 * answers + 0.25 * old_text)
    assert torch.allclose(sft.sft_loss(model, (x, y, m, torch.zeros(8, dtype=torch.bool))),
                          sft.masked_loss(logits, y, m))  # no replay rows: every masked token alike
    with pytest.raises(ValueError, match="replay"):
        sft.sft_batches(rows, 8, 128, pad_id=tok.end_id, replay_share=0.25)


def test_each_stage_key_covers_only_what_its_model_depends_on(world):
    later = tiny_world(preferences={"questions": 7}, reward={"steps": 3})
    assert later.key("base") == world.key("base") and later.key("sft") == world.key("sft")
    assert later.key("preferences") != world.key("preferences")
    assert later.key("reward") != world.key("reward")
    other_sft = tiny_world(sft={"steps": 41})
    assert other_sft.key("base") == world.key("base") and other_sft.key("sft") != world.key("sft")


def _changed(value):
    return (not value) if isinstance(value, bool) else value + 1 if isinstance(value, int) \
        else value * 1.5 + 0.125  # no fixed point among valid values (x * 0.5 + 0.125 kept 0.25)


def test_every_recipe_value_is_in_its_stage_key_and_the_later_ones(world):
    """No value can be left out of a cache name: each stage's key hashes its whole recipe and
    the key of the stage before it, so changing any field of a stage's recipe changes that
    stage's key and every later one's, never an earlier one's. (Before the recipes, the
    learning rates and weight decays were hard-coded and not hashed: change one and the old
    model was silently reused.)"""
    stages = recipes.STAGES
    assert [f.name for f in dataclasses.fields(world)] == ["tokenizer", *stages]
    for own, stage_name in enumerate(stages):
        recipe = getattr(world, stage_name)
        assert dataclasses.fields(recipe), stage_name
        for f in dataclasses.fields(recipe):
            changed = dataclasses.replace(recipe, **{f.name: _changed(getattr(recipe, f.name))})
            other = dataclasses.replace(world, **{stage_name: changed})
            for i, stage in enumerate(stages):
                assert (other.key(stage) != world.key(stage)) == (i >= own), (stage_name, f.name, stage)
    assert {"lr", "weight_decay", "warmup_steps", "seed"} <= {f.name for f in dataclasses.fields(world.base)}
    with pytest.raises(ValueError, match="unknown stage 'lora'"):
        world.key("lora")


def test_recipes_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipes.SFTRecipe().lr = 1.0


def test_the_profile_is_read_when_a_recipe_is_made_not_at_import(monkeypatch):
    monkeypatch.setenv("MINIGPT_PROFILE", "ci")
    ci = [r.for_profile() for r in (recipes.BaseRecipe, recipes.SFTRecipe, recipes.RewardRecipe)]
    monkeypatch.setenv("MINIGPT_PROFILE", "cpu")
    cpu = [r.for_profile() for r in (recipes.BaseRecipe, recipes.SFTRecipe, recipes.RewardRecipe)]
    assert [r.steps for r in ci] == [40, 20, 20]
    assert [r.steps for r in cpu] == [1500, 600, 600]
    assert (ci[0].n_layer, ci[0].n_embd) == (cpu[0].n_layer, cpu[0].n_embd)  # architectures never change


def test_finetune_takes_every_value_from_the_recipe(world, monkeypatch):
    seen = []
    monkeypatch.setattr(sft, "Trainer", lambda model, get_batch, cfg, loss_fn: seen.append(cfg)
                        or type("T", (), {"fit": lambda self: None})())
    model = GPT(world.config())
    pipeline.finetune(model, world, dataclasses.replace(world.sft, steps=5, lr=5e-4))
    pipeline.finetune(model, world, dataclasses.replace(world.sft, steps=10, weight_decay=0.3,
                                                        min_lr_ratio=0.5, seed=7))
    assert [(c.max_steps, c.lr) for c in seen] == [(5, 5e-4), (10, world.sft.lr)]
    assert (seen[1].weight_decay, seen[1].min_lr_ratio, seen[1].seed) == (0.3, 0.5, 7)
    assert seen[0].weight_decay == world.sft.weight_decay


def test_preferences_are_cached_and_a_corrupt_file_is_sampled_again(world, tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path))
    small = tiny_world(sft={"steps": 5}, preferences={"questions": 40})
    train, val = pipeline.preferences(small, progress=False)
    assert train and val and all(isinstance(p, comparisons.Preference) for p in train + val)
    # held out by construction: train pairs ask train questions, held-out pairs validation ones
    assert {questions.split_of(p.chosen.question) for p in train} == {"train"}
    assert {questions.split_of(p.chosen.question) for p in val} == {"validation"}
    files = list((tmp_path / "assistant").glob("preferences-*.json"))
    assert len(files) == 1
    assert pipeline.preferences(small, progress=False) == (train, val)  # read back, equal
    files[0].write_text("{not json")
    assert pipeline.preferences(small, progress=False) == (train, val)  # sampled again
    assert "sampling them again" in capsys.readouterr().out
    # the recipe's seed draws the pairs (it names the cache file, so it must change them)
    reseeded = dataclasses.replace(small, preferences=dataclasses.replace(small.preferences, seed=1))
    assert pipeline.preferences(reseeded, progress=False) != (train, val)
