"""Publishing a saved model folder: one wing, whose imports point one way.

    push.py        `hf-bigmodel push` and `push_folder`: plan the upload, translate the Hub's errors, commit
      -> card.py   the model card (README.md) from the folder and its training run; `write_model_card`
        -> loss_curve.py   the loss-curve PNG of the card (matplotlib)
        -> folder.py       reading and checking the folder: config, weights, files pushed, modeling code
          -> hf_bigmodel._io   atomic writes

What a card says about one architecture comes from that architecture's folder (`models/<arch>/card_<arch>.py`), and
the card templates are package data (`hf_bigmodel/model_cards/base.md` and each architecture's
`models/<arch>/card_<arch>.md`). Import the module you need; this package file
imports nothing, so `import hf_bigmodel` stays cheap.
"""
