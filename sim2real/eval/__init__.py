"""sim2real.eval"""
