"""Training loops (nothing here is imported by inference or the nodes).

StableSyncNet training (``latentsync train syncnet``, docs/training.md): ``syncnet_config`` reads upstream's yaml,
``syncnet_step`` / ``sync_loss`` compute one step, ``syncnet_loop`` runs it on DDP (torchrun, gloo or NCCL),
``run_files`` writes upstream-format checkpoints and resume files, ``cli`` is the command. U-Net training
(``latentsync train unet``, stage1 / stage2 / stage2_efficient) goes here too: ``unet_config``, ``unet_step`` /
``unet_losses`` / ``lpips_loss``, ``unet_memory``, ``unet_loop``; its batches in
``latentsync.data.unet_samples``.
"""
