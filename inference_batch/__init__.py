"""inference_batch"""
