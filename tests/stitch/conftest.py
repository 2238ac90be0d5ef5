import torch

import plato
from plato.train import Recipe, train


def trained(name, seed, dataset, epochs=6, **options):
    torch.manual_seed(seed)
    model = plato.create_model(name, num_classes=dataset.num_classes,
                               input_shape=dataset.input_shape, **options)
    train(model, dataset, Recipe(epochs=epochs, batch_size=64, seed=seed, device="cpu"),
          progress=False)
    return model.eval()
