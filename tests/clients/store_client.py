"""Model management through the real `ollama` and `huggingface_hub` Python packages.

Usage: store_client.py BASE_URL pull MODEL
           (ollama: pull with streamed progress, generate, copy, list, delete, list)
       store_client.py BASE_URL hf-download REPO FILE CACHE [--local-only]
           (huggingface_hub: hf_hub_download against $HF_ENDPOINT into CACHE)
Prints one JSON object.
"""

import json
import sys


def pull(base, model):
    import ollama

    client = ollama.Client(host=base)
    steps = []
    for progress in client.pull(model, stream=True):
        steps.append(
            {
                "status": progress.status,
                "digest": progress.digest,
                "total": progress.total,
                "completed": progress.completed,
            }
        )
    answer = client.generate(model=model, prompt="Say hi.", options={"num_predict": 4, "temperature": 0})
    client.copy(model, "my-copy")
    copied = client.generate(model="my-copy", prompt="Say hi.", options={"num_predict": 2, "temperature": 0})
    listed = [m.model for m in client.list().models]
    shown = client.show(model)
    client.delete(model)
    after = [m.model for m in client.list().models]
    try:
        client.generate(model=model, prompt="Say hi.", options={"num_predict": 2})
        gone = None
    except ollama.ResponseError as e:
        gone = e.status_code
    print(
        json.dumps(
            {
                "steps": steps,
                "answer": answer.response,
                "copied": copied.response,
                "listed": listed,
                "family": shown.details.family,
                "quantization": shown.details.quantization_level,
                "after": after,
                "gone": gone,
            }
        )
    )


def hf_download(repo, file, cache, local_only):
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(repo, file, cache_dir=cache, local_files_only=local_only)
    print(json.dumps({"path": path}))


if __name__ == "__main__":
    base, command, *rest = sys.argv[1:]
    if command == "pull":
        pull(base, rest[0])
    elif command == "hf-download":
        hf_download(rest[0], rest[1], rest[2], "--local-only" in rest)
    else:
        sys.exit(f"unknown command {command}")
