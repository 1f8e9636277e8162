"""sim2real.train"""
