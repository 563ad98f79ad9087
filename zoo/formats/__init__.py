"""Publishing formats: the zoo's build translated into the layouts other tools read.

``hf`` (a Hugging Face model repository folder, also a zoo mirror), ``oci`` (OCI registry
artifacts after the CNCF ModelPack spec, pushed and pulled with ``oras``), ``triton`` (a Triton
model repository); ``names`` holds the one table of file names, ``common`` what they share.
Layer: above the hub (it reads builds and mirrors through it); needs no torch.
"""
