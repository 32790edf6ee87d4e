"""The StatefulSetPlus controller: one release loop per object, composing the features.

It is the one package that imports features (revisions and config copies resolved, the release
planned, the plan written); the features know nothing of each other.
"""
