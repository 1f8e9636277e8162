"""sim2real.render"""
