"""rvec: reasoning vectors — extract θ_RL − θ_SFT, apply α·v to other models, measure the transfer."""

__version__ = "0.1.0"
