"""sim2real.models"""
