"""Attribution methods: pure, jit-compiled functions of (model, videos, targets, config).

Every method takes a loaded ``vjx.Model`` (or ``apply_fn(variables, video) -> logits`` plus
``variables=``), videos float32 ``B x T x H x W x 3``, targets int ``B`` and a frozen config, and
returns maps at input resolution plus diagnostics.
"""
from vjx.attribution.backprop import (Attribution, GradientConfig, IntegratedGradientsConfig, SmoothGradConfig,
                                     gradient, gradient_x_input, integrated_gradients, smooth_grad)
from vjx.attribution.attention import AttentionConfig, attention_relevance, attention_rollout
from vjx.attribution.gradcam import (GradCamConfig, grad_cam, grad_cam_plus_plus, layer_cam, saliency_tubes,
                                     xgrad_cam)
from vjx.attribution.excitation import (ContrastiveExcitationConfig, ExcitationConfig, ExcitationRnnConfig,
                                        contrastive_excitation_backprop, excitation_backprop,
                                        excitation_backprop_rnn)
from vjx.attribution.removal import OcclusionConfig, RiseConfig, occlusion, rise
from vjx.attribution.scorecam import ScoreCamConfig, score_cam
from vjx.attribution.extremal import (ExtremalConfig, ExtremalResult, ep2d, ep3d, ep3d_temporal_smoothing,
                                     step)
from vjx.attribution import registry
